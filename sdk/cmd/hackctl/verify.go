package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hackarena/hackarena/sdk/client"
	"github.com/hackarena/hackarena/sdk/receipt"
)

// receiptCmd fetches a submission's receipt, checks it against the
// server's key and saves it.
func receiptCmd(ctx context.Context, c *client.Client, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("receipt", flag.ContinueOnError)
	file := fs.String("o", "", "where to save it (default receipt-SUBMISSION_ID.json)")
	pos, asJSON, err := jsonFlag(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: hackctl receipt SUBMISSION_ID [-o FILE] [--json]")
	}
	env, err := c.Receipt(ctx, pos[0])
	if err != nil {
		return err
	}
	key, err := c.ReceiptKey(ctx)
	if err != nil {
		return fmt.Errorf("fetch the platform's receipt key: %w", err)
	}
	pub, err := key.Parse()
	if err != nil {
		return err
	}
	body, err := receipt.Verify(env, pub)
	if err != nil {
		return fmt.Errorf("the receipt the server sent does not verify: %w", err)
	}
	raw, err := json.MarshalIndent(env, "", "  ")
	if err != nil {
		return err
	}
	path := firstNonEmpty(*file, "receipt-"+pos[0]+".json")
	if err := os.WriteFile(path, append(raw, '\n'), 0o644); err != nil {
		return fmt.Errorf("save the receipt: %w", err)
	}
	if asJSON {
		return printJSON(out, body)
	}
	fmt.Fprintf(out, "saved %s; check it offline with: hackctl verify %s --key KEYFILE (the key: %s%s, id %s)\n", path, path, c.BaseURL, receipt.WellKnownPath, key.KeyID)
	printReceipt(out, body, env)
	return nil
}

// verify checks a saved receipt against a key: a file (the JSON the
// platform serves at its well-known path, or the bare base64 key), else
// the server's, fetched.
func verify(ctx context.Context, c *client.Client, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	keyFile := fs.String("key", "", "the platform's public key: the JSON at "+receipt.WellKnownPath+", or the base64 key; default: fetched from the server")
	pos, asJSON, err := jsonFlag(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: hackctl verify RECEIPT_FILE [--key KEYFILE] [--json]")
	}
	raw, err := os.ReadFile(pos[0])
	if err != nil {
		return fmt.Errorf("read the receipt: %w", err)
	}
	var env receipt.Envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return fmt.Errorf("%s is not a receipt (the JSON hackctl receipt saves): %w", pos[0], err)
	}
	var pub ed25519.PublicKey
	if *keyFile != "" {
		if pub, err = readKey(*keyFile); err != nil {
			return err
		}
	} else {
		key, err := c.ReceiptKey(ctx)
		if err != nil {
			return fmt.Errorf("fetch the platform's receipt key (or check offline with --key KEYFILE): %w", err)
		}
		if pub, err = key.Parse(); err != nil {
			return err
		}
	}
	body, err := receipt.Verify(env, pub)
	if err != nil {
		return fmt.Errorf("%s does not verify: %w", pos[0], err)
	}
	if asJSON {
		return printJSON(out, body)
	}
	fmt.Fprintf(out, "valid: signed by key %s\n", env.KeyID)
	printReceipt(out, body, env)
	return nil
}

func readKey(path string) (ed25519.PublicKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the key: %w", err)
	}
	var published receipt.PublicKey
	if json.Unmarshal(raw, &published) == nil && published.Key != "" {
		return published.Parse()
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(key) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%s holds no ed25519 public key (the JSON at %s, or the base64 key)", path, receipt.WellKnownPath)
	}
	return ed25519.PublicKey(key), nil
}

func printReceipt(out io.Writer, b receipt.Body, env receipt.Envelope) {
	fmt.Fprintf(out, "receipt %s: submission %s of team %q on %s (spec revision %d, sha256 %s)\n", b.ID, b.SubmissionID, b.Team, b.Challenge, b.SpecRevision, b.SpecSHA256)
	if b.Replaces != "" {
		fmt.Fprintf(out, "  replaces receipt %s (the submission was rescored)\n", b.Replaces)
	}
	fmt.Fprintf(out, "  plugin sha256 %s, judged by %s in %s, finished %s\n", b.PluginSHA256, firstNonEmpty(b.JudgeVersion, "?"), firstNonEmpty(b.Sandbox, "?"), b.FinishedAt.Format("2006-01-02 15:04:05Z07:00"))
	for _, d := range b.Datasets {
		fmt.Fprintf(out, "  data %s (%s) sha256 %s\n", d.Name, d.Role, d.SHA256)
	}
	status := b.Status
	if b.Reason != "" {
		status += ": " + b.Reason
	}
	fmt.Fprintf(out, "  %s %s\n", status, scoreLine(b.Public))
	switch {
	case env.Disclosure != nil:
		private, _ := env.Disclosure.Private()
		fmt.Fprintf(out, "  private half (disclosed after the reveal, matches the commitment): %s\n", scoreLine(private))
	case b.PrivateCommitment != "":
		fmt.Fprintf(out, "  private half committed to (sha256 %s), disclosed after the reveal\n", b.PrivateCommitment)
	}
}
