module github.com/voipbin/mediastream/bench

go 1.26.0

require github.com/voipbin/mediastream/sdk/go v0.0.0

require github.com/gorilla/websocket v1.5.3 // indirect

replace github.com/voipbin/mediastream/sdk/go => ../sdk/go
