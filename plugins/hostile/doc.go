// Package hostile holds test plugins that misbehave on purpose; each
// subfolder is its own tiny main, built and submitted by the judge's tests.
package hostile
