// Command pixery-engine is pixery's headless inference engine: it loads SDXL
// checkpoints, runs them on ONNX Runtime and serves them over HTTP. It never
// links Fyne or any GUI code.
package main

import "github.com/pixery/pixery/engine/cli"

func main() { cli.Exit() }
