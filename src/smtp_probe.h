/* smtp_probe.h: the state of one smtp.probe (lsmtp.c reads the options into it, smtp_dialogue.c
 * talks to the server with it). Internal to the smtp family. Depends on: smtp_conn.h, smtp_msg.h,
 * Lua 5.4. */
#ifndef RUNBOOK_SMTP_PROBE_H
#define RUNBOOK_SMTP_PROBE_H
#include <stddef.h>

#include <lua.h>

#include "smtp_conn.h"
#include "smtp_msg.h"

enum { STOP_CONNECT, STOP_HELO, STOP_MAIL, STOP_RCPT, STOP_DATA };
enum { TLS_AUTO, TLS_REQUIRED, TLS_NEVER };

#define REPLY_MAX 8192
#define LINE_MAX_LEN 2048

struct probe {
	/* options, validated before connecting; strings anchored by the options table */
	struct smtp_msg msg;
	const char *bind, *tls_name, *tls_ca;
	int lmtp, stop, tls_mode, tls_verify;
	/* the stream (C-owned socket and TLS state, released after the protected call) */
	struct smtp_conn c;
	double t0;
	/* the reply being read */
	int code;
	char enhanced[16];
	char reply[REPLY_MAX];
	size_t replylen;
	int nlines;
	/* the dialogue's state between stages */
	int ok, offered, accepted, accepted_idx[SMTP_MAX_RCPT];
};

/* stack slots inside probe_protected */
enum { SLOT_P = 1, SLOT_RES, SLOT_TRANSCRIPT, SLOT_STAGES };

/* The dialogue up to p->stop, run under lua_pcall with the stack slots above in place.
 * Returns 0 (the server answered, whatever it said) or -1 with p->c.fail set for
 * a connection-level failure. */
int smtp_dialogue(lua_State *L, struct probe *p);

/* Milliseconds since p->t0. */
double smtp_ms_since(const struct probe *p);

#endif
