//go:build !linux

package loop

// unreadBytes reports nothing unread on systems where it is not asked
// (the receive buffer is then set at the first call of ShortenReceive).
func unreadBytes(int) (int, error) { return 0, nil }

// setThreadNice does nothing where a thread has no niceness of its own.
func setThreadNice(int) error { return nil }

// threadNice reports 0 where a thread has no niceness of its own.
func threadNice() (int, error) { return 0, nil }
