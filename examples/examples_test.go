package examples_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// bound is how long any one step (a build, a node coming up, an example
// running) may take before the test gives up. It is a safety bound for a
// loaded machine, not a timing assertion.
const bound = 2 * time.Minute

// buildBound is the bound for building every example (with -race under
// make test): at a load of ~35 on 2 cores it took over 2 minutes.
const buildBound = 8 * time.Minute

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
	buildOut  []byte
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// examplesBin builds every example once into a temporary directory and
// returns the path of the named one.
func examplesBin(t *testing.T, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		gobin, err := exec.LookPath("go")
		if err != nil {
			buildErr = err
			return
		}
		if binDir, buildErr = os.MkdirTemp("", "mesh-examples-"); buildErr != nil {
			return
		}
		args := []string{"build", "-o", binDir + string(filepath.Separator)}
		if raceEnabled {
			args = append(args, "-race")
		}
		ctx, cancel := context.WithTimeout(context.Background(), buildBound)
		defer cancel()
		buildOut, buildErr = exec.CommandContext(ctx, gobin, append(args, "./...")...).CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("building the examples: %v\n%s", buildErr, buildOut)
	}
	return filepath.Join(binDir, name)
}

// serve starts exe -serve as a separate process and returns the node name it
// prints on its first line. The process is ended when the test ends.
func serve(t *testing.T, exe, name, cookie, join string) string {
	t.Helper()
	args := []string{"-serve", "-name", name, "-cookie", cookie}
	if join != "" {
		args = append(args, "-peer", join)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = childEnv()
	stdin, err := cmd.StdinPipe() // kept open: the node serves until it closes
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s -serve: %v\n%s", filepath.Base(exe), err, stderr.String())
			}
		case <-time.After(bound):
			cmd.Process.Kill()
			<-done
			t.Errorf("%s -serve did not stop at the end of its stdin", filepath.Base(exe))
		}
	})
	lines := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		line, _ := r.ReadString('\n')
		lines <- strings.TrimSpace(line)
		io.Copy(io.Discard, r)
	}()
	select {
	case got := <-lines:
		if got == "" {
			t.Fatalf("%s -serve printed no name; stderr:\n%s", filepath.Base(exe), stderr.String())
		}
		return got
	case <-time.After(bound):
		cmd.Process.Kill()
		t.Fatalf("%s -serve printed no name within %v", filepath.Base(exe), bound)
	}
	return ""
}

// runExample runs exe with args to its end and returns its stdout.
func runExample(t *testing.T, exe string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = childEnv()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %q: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(exe), args, err, out, stderr.String())
	}
	return string(out)
}

// childEnv is the environment of every example process: a race-enabled
// binary otherwise sleeps a second at exit (and an example waits for its
// partner's exit).
func childEnv() []string {
	return append(os.Environ(), "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
}

// name matches a node name with the bound port, for the prefix given.
func name(prefix string) string { return prefix + `@127\.0\.0\.1:[1-9][0-9]*` }

const pidRE = `<b@127\.0\.0\.1:[1-9][0-9]*\.[0-9a-f]+\.[0-9]+>`

// twoNodeExamples says, for each two-node example, what its driving node
// prints: one regexp per line, in order.
var twoNodeExamples = []struct {
	example string
	join    bool // a third node, c, joins the partner first
	want    []string
}{
	{"connect", false, []string{name("a") + ` connected to ` + name("b")}},
	{"list", true, []string{`cluster: \[` + name("b") + ` ` + name("c") + `\]`}},
	{"spawn", false, []string{
		`spawned ` + pidRE,
		`got: hello world, from ` + name("b"),
		`spawning an undefined actor is refused: true`,
	}},
	{"spawnlink", false, []string{
		`spawned and linked ` + pidRE,
		`linked worker exited: worker gave up`,
	}},
	{"global", false, []string{
		`whereis clock: ` + pidRE + ` true`,
		`clock says: the time on ` + name("b") + ` is [0-9:]+`,
		`after unregister, whereis clock: false`,
	}},
	{"monitornode", false, []string{
		`monitoring ` + name("b"),
		`nodedown: ` + name("b"),
	}},
	{"kv", false, []string{
		`put lang: ok`,
		`get lang: "go"`,
		`the server crashed: asked to crash`,
		`get lang from the restarted server: ""`,
	}},
}

func checkLines(t *testing.T, out string, want []string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, re := range want {
		if !regexp.MustCompile(`^` + re + `$`).MatchString(lines[i]) {
			t.Errorf("line %d = %q, want it to match %q", i+1, lines[i], re)
		}
	}
}

func TestStartPrintsTheBoundName(t *testing.T) {
	out := runExample(t, examplesBin(t, "start"), "-name", "start@127.0.0.1:0", "-cookie", "c")
	checkLines(t, out, []string{`started ` + name("start"), `connected nodes: \[\]`})
}

// Each example runs as two OS processes started by the test: the partner
// with -serve, then the driving node with -peer.
func TestExamplesRunAsTwoProcesses(t *testing.T) {
	for _, tc := range twoNodeExamples {
		t.Run(tc.example, func(t *testing.T) {
			t.Parallel()
			exe := examplesBin(t, tc.example)
			cookie := "cookie-" + tc.example
			b := serve(t, exe, "b@127.0.0.1:0", cookie, "")
			if tc.join {
				serve(t, exe, "c@127.0.0.1:0", cookie, b)
			}
			out := runExample(t, exe, "-name", "a@127.0.0.1:0", "-peer", b, "-cookie", cookie)
			checkLines(t, out, tc.want)
		})
	}
}

// Given no -peer, each example starts its partner (and list its third node)
// as a child process itself, and ends it before it exits.
func TestExamplesStartTheirOwnPartner(t *testing.T) {
	for _, tc := range twoNodeExamples {
		t.Run(tc.example, func(t *testing.T) {
			t.Parallel()
			checkLines(t, runExample(t, examplesBin(t, tc.example)), tc.want)
		})
	}
}

// A node with the wrong cookie is refused, and says so. A connect that
// never gets as far as the cookie proof is tried again, up to three
// times: on a machine loaded far past its cores (the suite's -race builds
// beside it), the server's first-byte bound (1 s, a hardening default)
// can drop a client whose ClientHello was not yet written, and the
// client then reports the closed handshake, not the cookie. A wrong
// cookie that connects fails at once.
func TestWrongCookieIsRefused(t *testing.T) {
	exe := examplesBin(t, "connect")
	b := serve(t, exe, "b@127.0.0.1:0", "right", "")
	var outs []string
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		cmd := exec.CommandContext(ctx, exe, "-peer", b, "-cookie", "wrong")
		cmd.Env = childEnv()
		out, err := cmd.CombinedOutput()
		cancel()
		if err == nil {
			t.Fatalf("connect with a wrong cookie succeeded: output %q", out)
		}
		if strings.Contains(string(out), "authentication failed") {
			return
		}
		outs = append(outs, fmt.Sprintf("err %v, output %q", err, out))
	}
	t.Fatalf("connect with a wrong cookie, three tries: %s; want a failure naming authentication", strings.Join(outs, "; "))
}
