//go:build !linux

package sysstat

import (
	"errors"
	"runtime"
)

// RSS returns the resident set size of this process in bytes; it reads
// Linux's /proc/self/status, so elsewhere it returns an error.
func RSS() (uint64, error) {
	return 0, errors.New("sysstat: RSS is measured on Linux only, not " + runtime.GOOS)
}
