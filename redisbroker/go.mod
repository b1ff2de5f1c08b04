module github.com/wsroom/wsroom/redisbroker

go 1.26.0

replace github.com/wsroom/wsroom => ../

require (
	github.com/gobwas/ws v1.5.0
	github.com/wsroom/wsroom v0.0.0-00010101000000-000000000000
	go.uber.org/goleak v1.3.0
	golang.org/x/sys v0.49.0
)

require (
	github.com/gobwas/httphead v0.1.0 // indirect
	github.com/stretchr/testify v1.12.1 // indirect
)
