package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"testing"
)

func TestParseLoadRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-pairs", "0"},
		{"-duration", "0s"},
		{"-payload", "-1"},
		{"-window", "0"},
		{"-mode", "galaxy"},
		{"-nodes", "0"},
		{"-nosuchflag"},
	} {
		var stderr bytes.Buffer
		if _, err := parseLoad(args, &stderr); err == nil {
			t.Errorf("parseLoad(%q) accepted bad flags", args)
		}
	}
}

func TestRunUnknownCommandFails(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"frobnicate"}, &out, &errOut); err == nil {
		t.Fatal("unknown command accepted")
	}
}

func TestLocalLoadRunReportsMessages(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"run", "-duration", "200ms", "-pairs", "2"}, &out, &errOut)
	if err != nil {
		t.Fatalf("run: %v (stderr %q)", err, errOut.String())
	}
	m := regexp.MustCompile(`messages: (\d+) in`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no message count in output %q", out.String())
	}
	if n, _ := strconv.Atoi(m[1]); n == 0 {
		t.Fatalf("load run moved no messages: %q", out.String())
	}
}

func TestLocalModeRunsOnOneNodeInThisProcess(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"run", "-mode=local", "-duration", "200ms", "-pairs", "2"}, &out, &errOut)
	if err != nil {
		t.Fatalf("run: %v (stderr %q)", err, errOut.String())
	}
	if !regexp.MustCompile(`(?m)^meshbench: local run on meshbench@127\.0\.0\.1:\d+: 2 pairs`).MatchString(out.String()) {
		t.Fatalf("not a local run: %q", out.String())
	}
	if m := regexp.MustCompile(`messages: ([1-9]\d*) in`).FindStringSubmatch(out.String()); m == nil {
		t.Fatalf("local run moved no messages: %q", out.String())
	}
}
