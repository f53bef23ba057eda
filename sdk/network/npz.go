package network

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Array is a dense row-major float32 array.
type Array struct {
	Shape []int
	Data  []float32
}

// Weights are a network's arrays by name.
type Weights map[string]*Array

// Bytes is the memory the weights occupy.
func (w Weights) Bytes() int64 {
	var n int64
	for _, a := range w {
		n += int64(len(a.Data)) * 4
	}
	return n
}

// MaxNPZBytes bounds the arrays one .npz may hold once decoded, so a small
// compressed file cannot make the reader allocate without limit.
const MaxNPZBytes = 1 << 30

// WriteNPZ writes w as numpy's .npz (a zip of .npy files), in name order
// with a fixed timestamp so the same weights give the same bytes.
func WriteNPZ(out io.Writer, w Weights) error {
	zw := zip.NewWriter(out)
	names := make([]string, 0, len(w))
	for name := range w {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		a := w[name]
		if len(a.Data) != size(a.Shape) {
			return fmt.Errorf("write npz: %q has %d values for shape %v", name, len(a.Data), a.Shape)
		}
		f, err := zw.CreateHeader(&zip.FileHeader{Name: name + ".npy", Method: zip.Deflate, Modified: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
		if err != nil {
			return fmt.Errorf("write npz %q: %w", name, err)
		}
		if err := writeNPY(f, a); err != nil {
			return fmt.Errorf("write npz %q: %w", name, err)
		}
	}
	return zw.Close()
}

func writeNPY(out io.Writer, a *Array) error {
	dims := make([]string, len(a.Shape))
	for i, d := range a.Shape {
		dims[i] = strconv.Itoa(d)
	}
	shape := strings.Join(dims, ", ")
	if len(a.Shape) == 1 {
		shape += ","
	}
	header := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", shape)
	// numpy pads the header with spaces so the data starts on a 64-byte
	// boundary, and ends it with a newline.
	pad := 64 - (10+len(header)+1)%64
	header += strings.Repeat(" ", pad%64) + "\n"
	buf := make([]byte, 10, 10+len(header)+4*len(a.Data))
	copy(buf, "\x93NUMPY\x01\x00")
	binary.LittleEndian.PutUint16(buf[8:], uint16(len(header)))
	buf = append(buf, header...)
	for _, v := range a.Data {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
	}
	_, err := out.Write(buf)
	return err
}

// ReadNPZ decodes numpy's .npz: every member must be a C-ordered float32
// or float64 .npy array (float64 is narrowed to float32).
func ReadNPZ(data []byte) (Weights, error) { return readNPZ(data, nil, MaxNPZBytes) }

// ReadWeights decodes the .npz of a network's weights for the Engine:
// each member's header is checked against the network's parameters (name
// and shape) and the bytes left in budget before its data is decoded, so
// a small compressed file cannot make the reader decompress or allocate
// what the network does not need.
func (n *Network) ReadWeights(data []byte, budget int64) (Weights, error) {
	ps, err := n.Params()
	if err != nil {
		return nil, err
	}
	want := map[string][]int{}
	for _, p := range ps {
		want[p.Name] = p.Shape
	}
	w, err := readNPZ(data, want, min(budget, MaxNPZBytes))
	if err != nil {
		return nil, err
	}
	return w, n.CheckWeights(w)
}

// BudgetExceededError is weights larger than the budget they were read
// against.
type BudgetExceededError struct {
	Array  string
	Need   int64
	Budget int64
}

func (e *BudgetExceededError) Error() string {
	return fmt.Sprintf("read npz %q: the weights need at least %d bytes, more than the %d left", e.Array, e.Need, e.Budget)
}

// readNPZ decodes an .npz. With want set, only those arrays, in those
// shapes, are accepted, and each is checked before its data is read.
func readNPZ(data []byte, want map[string][]int, budget int64) (Weights, error) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("read npz: not a zip archive (numpy.savez writes one): %w", err)
	}
	w := Weights{}
	var total int64
	for _, f := range zr.File {
		name, ok := strings.CutSuffix(f.Name, ".npy")
		if !ok {
			return nil, fmt.Errorf("read npz: member %q is not a .npy array", f.Name)
		}
		if _, dup := w[name]; dup {
			return nil, fmt.Errorf("read npz: array %q appears twice", name)
		}
		var shape []int
		if want != nil {
			if shape, ok = want[name]; !ok {
				return nil, fmt.Errorf("read npz: %q is not a weight of this network", name)
			}
		}
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("read npz %q: %w", name, err)
		}
		a, err := readNPYChecked(rc, shape, total, budget)
		rc.Close()
		if err != nil {
			var over *BudgetExceededError
			if errors.As(err, &over) {
				over.Array = name
				return nil, over
			}
			return nil, fmt.Errorf("read npz %q: %w", name, err)
		}
		total += int64(len(a.Data)) * 4
		w[name] = a
	}
	return w, nil
}

var (
	descrRe   = regexp.MustCompile(`'descr':\s*'([^']*)'`)
	fortranRe = regexp.MustCompile(`'fortran_order':\s*(True|False)`)
	shapeRe   = regexp.MustCompile(`'shape':\s*\(([^)]*)\)`)
)

func readNPY(r io.Reader, budget int64) (*Array, error) { return readNPYChecked(r, nil, 0, budget) }

// readNPYChecked reads one .npy. want, when set, is the only shape
// accepted; used + the array's float32 bytes must stay within budget.
// Both are checked from the header, before any data is read.
func readNPYChecked(r io.Reader, want []int, used, budget int64) (*Array, error) {
	var pre [8]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return nil, fmt.Errorf("short .npy header: %w", err)
	}
	if string(pre[:6]) != "\x93NUMPY" {
		return nil, fmt.Errorf("not a .npy array (bad magic)")
	}
	var headerLen int
	switch pre[6] {
	case 1:
		var l [2]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return nil, fmt.Errorf("short .npy header: %w", err)
		}
		headerLen = int(binary.LittleEndian.Uint16(l[:]))
	case 2, 3:
		var l [4]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return nil, fmt.Errorf("short .npy header: %w", err)
		}
		headerLen = int(binary.LittleEndian.Uint32(l[:]))
	default:
		return nil, fmt.Errorf(".npy format version %d is not supported", pre[6])
	}
	if headerLen > 1<<16 {
		return nil, fmt.Errorf(".npy header of %d bytes is too long", headerLen)
	}
	header := make([]byte, headerLen)
	if _, err := io.ReadFull(r, header); err != nil {
		return nil, fmt.Errorf("short .npy header: %w", err)
	}
	descr := descrRe.FindSubmatch(header)
	fortran := fortranRe.FindSubmatch(header)
	shapeM := shapeRe.FindSubmatch(header)
	if descr == nil || fortran == nil || shapeM == nil {
		return nil, fmt.Errorf(".npy header %q lacks descr, fortran_order or shape", header)
	}
	if string(fortran[1]) == "True" {
		return nil, fmt.Errorf("array is in Fortran order: save it with numpy.ascontiguousarray")
	}
	var width int
	switch string(descr[1]) {
	case "<f4":
		width = 4
	case "<f8":
		width = 8
	default:
		return nil, fmt.Errorf("dtype %s is not supported: convert to float32 (<f4)", descr[1])
	}
	var shape []int
	elems := int64(1)
	for _, part := range strings.Split(string(shapeM[1]), ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		d, err := strconv.Atoi(part)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("bad dimension %q in shape (%s)", part, shapeM[1])
		}
		shape = append(shape, d)
		if d > 0 && elems > math.MaxInt32/int64(d) {
			elems = math.MaxInt32 + 1
		} else {
			elems *= int64(d)
		}
		if elems > math.MaxInt32 {
			return nil, fmt.Errorf("array of shape (%s) is larger than the %d MiB an .npz may hold", shapeM[1], MaxNPZBytes>>20)
		}
	}
	if want != nil && !slices.Equal(shape, want) {
		return nil, fmt.Errorf("array has shape %v, the network needs %v", shape, want)
	}
	if used+elems*4 > budget {
		if want == nil {
			return nil, fmt.Errorf("array of shape (%s) is larger than the %d MiB an .npz may hold", shapeM[1], MaxNPZBytes>>20)
		}
		return nil, &BudgetExceededError{Need: used + elems*4, Budget: budget}
	}
	// Decoded in chunks straight into float32: a float64 array never
	// exists whole in memory.
	data := make([]float32, elems)
	chunk := make([]byte, min(int64(64<<10), max(elems, 1)*int64(width)))
	for done := 0; done < len(data); {
		n := min(len(chunk)/width, len(data)-done)
		if _, err := io.ReadFull(r, chunk[:n*width]); err != nil {
			return nil, fmt.Errorf("array data is shorter than shape (%s) needs: %w", shapeM[1], err)
		}
		for i := range n {
			if width == 4 {
				data[done+i] = math.Float32frombits(binary.LittleEndian.Uint32(chunk[4*i:]))
			} else {
				data[done+i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(chunk[8*i:])))
			}
		}
		done += n
	}
	return &Array{Shape: shape, Data: data}, nil
}
