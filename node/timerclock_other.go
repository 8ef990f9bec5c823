//go:build !linux

package node

func newTimerClock() timerClock { return newChanClock() }
