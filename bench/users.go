package main

// userIndex maps a user ID to that user's connections: the servers that
// lack one (gorilla's hub, gobwas-raw, coder) use it for SendTo. It is not
// safe for concurrent use; each server guards it as the rest of its state.
type userIndex[T comparable] map[string]map[T]struct{}

func (u userIndex[T]) add(user string, c T) {
	if u[user] == nil {
		u[user] = map[T]struct{}{}
	}
	u[user][c] = struct{}{}
}

func (u userIndex[T]) remove(user string, c T) {
	if m := u[user]; m != nil {
		delete(m, c)
		if len(m) == 0 {
			delete(u, user)
		}
	}
}
