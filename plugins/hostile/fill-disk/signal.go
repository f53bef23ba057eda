package main

import (
	"os/signal"
	"syscall"
)

func ignoreSIGXFSZ() { signal.Ignore(syscall.SIGXFSZ) }
