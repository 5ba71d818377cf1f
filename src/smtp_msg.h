/* smtp_msg.h: the probe message and the validation of everything that goes into an SMTP
 * command or header line (lsmtp.c). Validation raises: a CR, LF or NUL in an address, HELO
 * name or header is a programming error, never something to send. */
#ifndef RUNBOOK_SMTP_MSG_H
#define RUNBOOK_SMTP_MSG_H
#include <lua.h>

#define SMTP_MAX_RCPT 100

struct smtp_msg {
	const char *from;          /* "" = null sender */
	const char *rcpt[SMTP_MAX_RCPT];
	int nrcpt;
	const char *helo;          /* Message-ID domain */
	const char *subject, *message_id, *probe_id, *date, *body;   /* NULL = generated */
};

/* Raises unless s is a mailbox usable inside <...>: no control bytes, spaces or angle
 * brackets, at most 254 bytes ("" allowed when empty_ok). what names it in the error. */
void smtp_check_address(lua_State *L, const char *s, int empty_ok, const char *what);

/* Raises unless s is usable on a header line (no CR, LF or NUL; at most 900 bytes). */
void smtp_check_header(lua_State *L, const char *s, const char *what);

/* Reads from/rcpt/helo/subject/message_id/probe_id/date/message out of the options table at idx
 * into m, validating each (raises). rcpt may be one string or a list. */
void smtp_read_message_options(lua_State *L, int idx, struct smtp_msg *m, int need_rcpt);

/* Pushes the full probe message (CRLF lines, not dot-stuffed), then its Message-ID and probe id.
 * Fills generated values (Message-ID, probe id, Date) when m leaves them NULL. */
void smtp_push_message(lua_State *L, const struct smtp_msg *m);

/* Pushes s dot-stuffed with CRLF line endings and the terminating "." line, for DATA. */
void smtp_push_dot_stuffed(lua_State *L, const char *s, size_t len);

#endif
