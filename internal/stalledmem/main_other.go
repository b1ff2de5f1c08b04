//go:build !linux

// Command stalledmem measures what stalled connections cost a wsroom
// server; it reads the kernel's socket memory and runs on Linux only.
package main

import "log"

func main() { log.Fatal("stalledmem: Linux only") }
