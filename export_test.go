package wsroom

// SetParallelFanout lowers the recipient count at which h splits a send
// across cores, so tests can exercise the parallel path with few sockets.
// Call it before the hub serves anything.
func SetParallelFanout(h *Hub, n int) { h.parallelMin = n }
