module github.com/trackd/trackd

go 1.26

require (
	github.com/customerio/go-customerio/v3 v3.10.0
	github.com/google/go-cmp v0.7.0
)
