module github.com/wsroom/wsroom/redisbroker/internal/clientcmp

go 1.26.0

replace (
	github.com/wsroom/wsroom => ../../..
	github.com/wsroom/wsroom/redisbroker => ../..
)

require (
	github.com/redis/go-redis/v9 v9.23.0
	github.com/redis/rueidis v1.0.80
	github.com/wsroom/wsroom/redisbroker v0.0.0-00010101000000-000000000000
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/gobwas/httphead v0.1.0 // indirect
	github.com/gobwas/ws v1.5.0 // indirect
	github.com/wsroom/wsroom v0.0.0-00010101000000-000000000000 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
)
