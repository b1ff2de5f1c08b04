module github.com/wsroom/wsroom/natsbroker/compare

go 1.26.0

replace (
	github.com/wsroom/wsroom => ../../
	github.com/wsroom/wsroom/natsbroker => ../
	github.com/wsroom/wsroom/redisbroker => ../../redisbroker
)

require (
	github.com/gobwas/ws v1.5.0
	github.com/wsroom/wsroom v0.0.0-00010101000000-000000000000
	github.com/wsroom/wsroom/natsbroker v0.0.0-00010101000000-000000000000
	github.com/wsroom/wsroom/redisbroker v0.0.0-00010101000000-000000000000
	go.uber.org/goleak v1.3.0
)

require (
	github.com/gobwas/httphead v0.1.0 // indirect
	github.com/klauspost/compress v1.20.0 // indirect
	github.com/nats-io/nats.go v1.56.0 // indirect
	github.com/nats-io/nkeys v0.4.16 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/crypto v0.57.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
)
