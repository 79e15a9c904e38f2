package download

// IsDiskFull reports whether err means that the disk (or the user's quota)
// ran out of space, so that other writers of large files (pixery-engine
// setup unpacking the ONNX Runtime libraries) can report it as Download
// does, wrapping ErrDiskFull.
func IsDiskFull(err error) bool { return isDiskFull(err) }
