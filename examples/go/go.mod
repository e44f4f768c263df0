module github.com/voipbin/mediastream/examples/go

go 1.26.0

require github.com/voipbin/mediastream/sdk/go v0.0.0

require (
	golang.org/x/net v0.60.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	golang.org/x/text v0.42.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20261104224025-d1e00e9f33ab // indirect
	google.golang.org/grpc v1.85.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

// The examples build against the SDK in this repository. In your own module,
// drop this line and require a released version instead.
replace github.com/voipbin/mediastream/sdk/go => ../../sdk/go
