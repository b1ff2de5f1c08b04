//go:build !linux

// Command sockcost measures the kernel's cost of filling stalled loopback
// sockets; it runs on Linux only.
package main

import "log"

func main() { log.Fatal("sockcost: Linux only") }
