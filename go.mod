module github.com/pixery/pixery

go 1.26.8

require (
	github.com/BurntSushi/toml v1.6.0 // indirect
	github.com/yalue/onnxruntime_go v1.27.0 // indirect
	golang.org/x/text v0.44.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)
