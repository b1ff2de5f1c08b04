//go:build !linux

package redistest

import "os/exec"

func dieWithParent(*exec.Cmd) {}

// Pause is only implemented on Linux: elsewhere it skips the test.
func (s *Server) Pause() { s.t.Skipf("redistest: Pause needs Linux") }

// Resume continues a paused process (Linux only).
func (s *Server) Resume() {}
