// Package judge consumes the submission queues: it runs each plugin in a
// sandbox, streams it the hidden test set, scores the predictions and writes
// results and leaderboards.
package judge
