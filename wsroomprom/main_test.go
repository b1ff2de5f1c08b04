package wsroomprom_test

import (
	"log/slog"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// quietLogger discards the hubs' log records (the tests provoke panics).
func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
