package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"net/http"
)

// Messaging types of the Send API.
const (
	MessagingResponse   = "RESPONSE"
	MessagingUpdate     = "UPDATE"
	MessagingMessageTag = "MESSAGE_TAG"
)

// MaxMetadataLen is the Send API's limit on message.metadata (it must be
// under 1000 characters).
const MaxMetadataLen = 999

// Recipient addresses a Send API message: exactly one field is set.
type Recipient struct {
	ID      string `json:"id,omitempty"`       // PSID / IGSID
	UserRef string `json:"user_ref,omitempty"` // checkbox plugin reference
}

// SendThreadControl hands the thread over in the same Send API call
// (Conversation Routing only): ControlType "pass" (to AppID, or the default
// app when empty) or "release".
type SendThreadControl struct {
	ControlType string `json:"control_type"`
	AppID       string `json:"app_id,omitempty"`
}

// SendRequest is one Send API call. Message is kept as raw JSON so that
// text, attachments, templates and quick replies all fit.
type SendRequest struct {
	Recipient Recipient
	// MessagingType is RESPONSE, UPDATE or MESSAGE_TAG. When empty it
	// defaults to MESSAGE_TAG if Tag is set, else RESPONSE.
	MessagingType string
	// Tag goes with MESSAGE_TAG, e.g. "HUMAN_AGENT".
	Tag string
	// Message is the message JSON object, e.g. {"text":"hi"}.
	Message json.RawMessage
	// Metadata, when set, is added to Message as message.metadata (echoed
	// back in message_echoes); under 1000 characters.
	Metadata string
	// SenderAction (typing_on, typing_off, mark_seen) is sent instead of a
	// Message, never with one.
	SenderAction string
	// NotificationType is REGULAR (default), SILENT_PUSH or NO_PUSH.
	NotificationType string
	// PersonaID sends as a persona.
	PersonaID string
	// ThreadControl optionally hands over the thread with the message.
	ThreadControl *SendThreadControl
}

// SendResult is the Send API's answer. RecipientID is empty when the
// recipient was addressed by user_ref.
type SendResult struct {
	RecipientID string
	MessageID   string
}

// sendBody is the wire form of SendRequest.
type sendBody struct {
	Recipient        Recipient          `json:"recipient"`
	MessagingType    string             `json:"messaging_type,omitempty"`
	Tag              string             `json:"tag,omitempty"`
	Message          json.RawMessage    `json:"message,omitempty"`
	SenderAction     string             `json:"sender_action,omitempty"`
	NotificationType string             `json:"notification_type,omitempty"`
	PersonaID        string             `json:"persona_id,omitempty"`
	ThreadControl    *SendThreadControl `json:"thread_control,omitempty"`
}

// SendText sends a plain text message to user as a RESPONSE.
func (c *Client) SendText(ctx context.Context, page, user, text string) (SendResult, error) {
	msg, err := json.Marshal(struct {
		Text string `json:"text"`
	}{text})
	if err != nil {
		return SendResult{}, errorf("messages", "encoding message: %w", err)
	}
	return c.Send(ctx, page, SendRequest{
		Recipient:     Recipient{ID: user},
		MessagingType: MessagingResponse,
		Message:       msg,
	})
}

// Send calls the Send API on page.
func (c *Client) Send(ctx context.Context, page string, msg SendRequest) (SendResult, error) {
	const endpoint = "messages"
	body, err := encodeSend(msg)
	if err != nil {
		return SendResult{}, errorf(endpoint, "%w", err)
	}
	user := msg.Recipient.ID
	if user == "" {
		user = "user_ref"
	}
	var res SendResult
	err = c.do(ctx, call{
		method:   http.MethodPost,
		page:     page,
		endpoint: endpoint,
		user:     user,
		body:     body,
	}, func(b []byte) error {
		var r struct {
			RecipientID flexString `json:"recipient_id"`
			MessageID   string     `json:"message_id"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("unexpected response %s: %w", snippet(string(b)), err)
		}
		res = SendResult{RecipientID: string(r.RecipientID), MessageID: r.MessageID}
		return nil
	})
	if err != nil {
		return SendResult{}, err
	}
	return res, nil
}

// encodeSend validates msg and returns its JSON body.
func encodeSend(msg SendRequest) ([]byte, error) {
	if (msg.Recipient.ID == "") == (msg.Recipient.UserRef == "") {
		return nil, fmt.Errorf("recipient needs exactly one of id and user_ref")
	}
	hasMsg := len(bytes.TrimSpace(msg.Message)) > 0
	if hasMsg == (msg.SenderAction != "") {
		return nil, fmt.Errorf("need exactly one of message and sender_action")
	}
	b := sendBody{
		Recipient:        msg.Recipient,
		MessagingType:    msg.MessagingType,
		Tag:              msg.Tag,
		SenderAction:     msg.SenderAction,
		NotificationType: msg.NotificationType,
		PersonaID:        msg.PersonaID,
		ThreadControl:    msg.ThreadControl,
	}
	if hasMsg {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(msg.Message, &obj); err != nil || obj == nil {
			return nil, fmt.Errorf("message must be a JSON object")
		}
		if msg.Metadata != "" {
			if utf8.RuneCountInString(msg.Metadata) > MaxMetadataLen {
				return nil, fmt.Errorf("metadata longer than %d characters", MaxMetadataLen)
			}
			m, err := json.Marshal(msg.Metadata)
			if err != nil {
				return nil, fmt.Errorf("encoding metadata: %w", err)
			}
			obj["metadata"] = m
			if b.Message, err = json.Marshal(obj); err != nil {
				return nil, fmt.Errorf("encoding message: %w", err)
			}
		} else {
			b.Message = msg.Message
		}
		if b.MessagingType == "" {
			b.MessagingType = MessagingResponse
			if b.Tag != "" {
				b.MessagingType = MessagingMessageTag
			}
		}
	} else if msg.Metadata != "" {
		return nil, fmt.Errorf("metadata needs a message")
	}
	if b.MessagingType == MessagingMessageTag && b.Tag == "" {
		return nil, fmt.Errorf("messaging_type MESSAGE_TAG needs a tag")
	}
	if b.Tag != "" && b.MessagingType != MessagingMessageTag {
		return nil, fmt.Errorf("tag %q needs messaging_type MESSAGE_TAG, got %q", b.Tag, b.MessagingType)
	}
	out, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("encoding request: %w", err)
	}
	return out, nil
}
