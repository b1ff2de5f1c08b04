// Package sysstat holds the process and socket measurements that the
// measuring programs (bench/, internal/idlemem, internal/stalledmem,
// wsroomprom/internal/overhead) share: resident memory, CPU time, CPU
// pinning and the open-files limit of this process; busy time of the
// machine's CPUs, its load average, its packet drops and TCP memory; and
// the kernel's send-side memory of sockets a server accepted (SocketList).
//
// It reads Linux's /proc and Linux-only socket options, so it is for
// Linux; elsewhere only RSS exists, and it returns an error. Functions
// that feed reports return 0 (or the value their doc names) when the
// figure is unavailable; the others return an error.
package sysstat
