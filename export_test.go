package wsroom

// SetParallelFanout lowers the recipient count at which h splits a send
// across cores, so tests can exercise the parallel path with few sockets.
// Call it before the hub serves anything.
func SetParallelFanout(h *Hub, n int) { h.parallelMin = n }

// UnfollowHistory runs what a room's last member leaving does to the
// node's copy of its history, at a moment a test chooses.
func UnfollowHistory(h *Hub, room string) { h.unfollowHistory(room) }

// HistoryLen is the number of messages the room's history keeps (0 if
// it keeps none).
func HistoryLen(h *Hub, room string) int {
	hs := h.lockHistory(room)
	if hs == nil {
		return 0
	}
	defer hs.mu.Unlock()
	return hs.n
}
