// Command no-handshake starts and never says anything.
package main

import "time"

func main() { time.Sleep(time.Hour) }
