package api

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/gofiber/fiber/v2"

	"github.com/hackarena/hackarena/platform/store"
)

// Error is an API error: an HTTP status, a snake_case code clients branch
// on, and a message saying what was wrong and what to do.
type Error struct {
	Status  int
	Code    string
	Message string
	// RetryAfter, in seconds, is sent as the Retry-After header when set.
	RetryAfter int
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func apiError(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// errorHandler maps every error to {"error":{"code","message"}} in one
// place; errors that are not *Error are internal and their text is logged,
// not shown.
func errorHandler(log *slog.Logger) fiber.ErrorHandler {
	return func(c *fiber.Ctx, err error) error {
		var apiErr *Error
		var fiberErr *fiber.Error
		switch {
		case errors.As(err, &apiErr):
		case errors.As(err, &fiberErr):
			apiErr = fromFiber(fiberErr)
		case store.Unavailable(err):
			// Redis is restarting or out of reach: the same request may be
			// sent again (an upload with its Idempotency-Key stays one
			// submission, whether or not this try was recorded).
			log.Warn("redis unavailable", "method", c.Method(), "path", c.Path(), "err", err)
			apiErr = apiError(fiber.StatusServiceUnavailable, "unavailable", "the platform's database is briefly unavailable; send the same request again in a few seconds")
			apiErr.RetryAfter = 2
		default:
			log.Error("internal error", "method", c.Method(), "path", c.Path(), "err", err)
			apiErr = apiError(fiber.StatusInternalServerError, "internal", "the server failed to handle the request; try again, and report it if it persists")
		}
		if apiErr.RetryAfter > 0 {
			c.Set(fiber.HeaderRetryAfter, fmt.Sprint(apiErr.RetryAfter))
		}
		var body errorBody
		body.Error.Code, body.Error.Message = apiErr.Code, apiErr.Message
		return c.Status(apiErr.Status).JSON(body)
	}
}

func fromFiber(e *fiber.Error) *Error {
	switch e.Code {
	case fiber.StatusNotFound:
		return apiError(e.Code, "not_found", "no such endpoint: see the HTTP API in the README")
	case fiber.StatusMethodNotAllowed:
		return apiError(e.Code, "method_not_allowed", "this endpoint does not accept that method")
	case fiber.StatusRequestEntityTooLarge:
		return apiError(e.Code, "too_large", "the request body is too large")
	}
	return apiError(e.Code, "bad_request", "%s", e.Message)
}
