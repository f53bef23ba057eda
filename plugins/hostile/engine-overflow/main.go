// Command engine-overflow sends the Engine a network whose shape
// arithmetic wraps a 64-bit int unchecked: an input of [2^32, 2^32, 1]
// through Flatten is 0 elements, and a Dense layer on it then indexed
// outside its buffer inside gorgonia, where no recover could catch it.
// It bypasses the SDK, which would refuse the network itself.
package main

import (
	"context"
	"fmt"

	"google.golang.org/grpc/status"

	"github.com/hackarena/hackarena/plugins/hostile/internal/attack"
	"github.com/hackarena/hackarena/plugins/hostile/internal/rawengine"
	"github.com/hackarena/hackarena/sdk/proto/enginev1"
)

const network = `{"input":[4294967296,4294967296,1],"layers":[{"kind":"Flatten"},{"kind":"Dense","name":"d","units":10}]}`

func main() {
	rawengine.Serve("engine-overflow", func(ctx context.Context, e *rawengine.Engine) error {
		c, err := e.Client()
		if err != nil {
			return err
		}
		_, err = c.Load(ctx, &enginev1.LoadRequest{NetworkJson: []byte(network), WeightsNpz: []byte("PK\x05\x06" + string(make([]byte, 18)))})
		attack.Report("load_code", status.Code(err))
		// And a Run whose shape wraps, on a handle that does not exist.
		_, runErr := c.Run(ctx, &enginev1.RunRequest{Handle: "net-0", Shape: []int64{1 << 32, 1 << 32}})
		attack.Report("run_code", status.Code(runErr))
		if err == nil {
			return fmt.Errorf("the engine loaded the network")
		}
		return err
	})
}
