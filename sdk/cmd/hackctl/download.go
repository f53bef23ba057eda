package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hackarena/hackarena/sdk/client"
)

// DetailFile is where download keeps the challenge as the platform
// described it, beside the data: what eval reads when there is no server.
const DetailFile = "challenge.json"

func downloadCmd(ctx context.Context, c *client.Client, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("download", flag.ContinueOnError)
	dir := fs.String("o", "", "folder for the files (default: data/CHALLENGE)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: hackctl download CHALLENGE [-o DIR]")
	}
	slug := pos[0]
	if *dir == "" {
		*dir = filepath.Join("data", slug)
	}
	detail, raw, err := c.ChallengeDetail(ctx, slug)
	if err != nil {
		return fmt.Errorf("challenge %q: %w", slug, err)
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(*dir, DetailFile), raw); err != nil {
		return err
	}
	var fetched, skipped int64
	for _, f := range detail.Data {
		if strings.ContainsAny(f.Name, `/\`) || f.Name == ".." || f.Name == "." || f.Name == DetailFile {
			return fmt.Errorf("the platform lists a data file named %q, which hackctl will not write", f.Name)
		}
		bar := newProgressBar(out, f.Name, f.Bytes)
		was, err := c.Download(ctx, f, filepath.Join(*dir, f.Name), 5, bar.update)
		if err != nil {
			bar.abandon()
			return fmt.Errorf("download %s: %w (run the same command again: it resumes where it stopped)", f.Name, err)
		}
		if was {
			skipped++
			fmt.Fprintf(out, "%s  already here (sha256 checked)\n", f.Name)
			continue
		}
		fetched++
		bar.finish()
	}
	fmt.Fprintf(out, "%s: %d files in %s (%d downloaded, %d already there)\n", slug, len(detail.Data), *dir, fetched, skipped)
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// progressBar draws one line per file: bytes, percentage, rate and time
// left. On a terminal it redraws in place a few times a second; in a log
// or a pipe it prints a line at each quarter, so scripts see it move
// without pages of output.
type progressBar struct {
	out      io.Writer
	name     string
	total    int64
	tty      bool
	last     time.Time
	quarter  int64
	from     int64
	lastSeen client.DownloadProgress
}

func newProgressBar(out io.Writer, name string, total int64) *progressBar {
	return &progressBar{out: out, name: name, total: total, tty: isTerminal(out), quarter: -1}
}

func (b *progressBar) update(p client.DownloadProgress) {
	b.lastSeen = p
	if p.From > 0 && p.From != b.from {
		b.from = p.From
		if b.tty {
			fmt.Fprint(b.out, "\r\033[K")
		}
		fmt.Fprintf(b.out, "%s  resuming after %s\n", b.name, bytesIEC(p.From))
	}
	if b.tty {
		if time.Since(b.last) < 200*time.Millisecond && p.Done < p.Total {
			return
		}
		b.last = time.Now()
		fmt.Fprintf(b.out, "\r%s\033[K", b.line(p))
		return
	}
	if b.total <= 0 {
		return
	}
	q := p.Done * 4 / b.total
	if q > b.quarter && q < 4 {
		b.quarter = q
		fmt.Fprintln(b.out, b.line(p))
	}
}

func (b *progressBar) line(p client.DownloadProgress) string {
	fetched := p.Done - max(p.Resumed, 0)
	rate := 0.0
	if s := p.Elapsed.Seconds(); s > 0 {
		rate = float64(fetched) / s
	}
	pct := 100.0
	if p.Total > 0 {
		pct = 100 * float64(p.Done) / float64(p.Total)
	}
	left := "-"
	if rate > 0 && p.Total > p.Done {
		left = (time.Duration(float64(p.Total-p.Done) / rate * float64(time.Second))).Round(time.Second).String()
	}
	return fmt.Sprintf("%s  %s / %s  %3.0f%%  %s/s  %s left", b.name, bytesIEC(p.Done), bytesIEC(p.Total), pct, bytesIEC(int64(rate)), left)
}

func (b *progressBar) finish() {
	p := b.lastSeen
	p.Done = max(p.Done, b.total)
	end := "\n"
	if b.tty {
		fmt.Fprint(b.out, "\r\033[K")
	}
	fmt.Fprint(b.out, strings.Replace(b.line(p), "  - left", "  done", 1)+"  sha256 ok"+end)
}

func (b *progressBar) abandon() {
	if b.tty {
		fmt.Fprintln(b.out)
	}
}

func bytesIEC(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
