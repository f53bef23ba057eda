package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// savedConfig is what hackctl remembers between runs.
type savedConfig struct {
	Server string `json:"server"`
	Team   string `json:"team"`
	Token  string `json:"token"`
}

// configPath is $HACKARENA_CONFIG, else hackarena/config.json in the user's
// config directory.
func configPath() (string, error) {
	if p := os.Getenv("HACKARENA_CONFIG"); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find your config directory (set HACKARENA_CONFIG to a file path): %w", err)
	}
	return filepath.Join(dir, "hackarena", "config.json"), nil
}

func loadConfig() (savedConfig, error) {
	var c savedConfig
	path, err := configPath()
	if err != nil {
		return c, err
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("%s is not valid JSON (delete it and log in again): %w", path, err)
	}
	return c, nil
}

// save writes the config with mode 0600: it holds a bearer token.
func (c savedConfig) save() error {
	path, err := configPath()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return nil
}
