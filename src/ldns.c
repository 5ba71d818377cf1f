/* ldns.c: runbook.dns, one DNS question to one explicit server (or, in production only, the
 * servers of /etc/resolv.conf), answered as a Lua table.
 *
 *   dns.query{name=, type="A"|"AAAA"|"MX"|"TXT"|"PTR"|"CNAME"|"NS"|"SOA" (default "A"),
 *             server=IP|nil, port=53, timeout=5 (seconds, whole query), tcp=false,
 *             retries=1 (extra UDP tries), recurse=true,
 *             resolv_conf=PATH (where the servers come from when server is nil; default
 *             /etc/resolv.conf; port still applies; up to 3 servers share the timeout)}
 *     -> {rcode="NOERROR", nodata=bool, answers={rr...}, authority={rr...}, additional={rr...},
 *         flags={aa=,tc=,rd=,ra=}, qname=, qtype=, server=, port=, tcp=bool, ms=}
 *        rr = {name=, type=, ttl=, class=, data=<presentation rdata>, plus per type:
 *              A/AAAA address=; MX preference=, exchange=; TXT text= (strings joined),
 *              strings={...}; CNAME/PTR/NS target=}
 *     | nil, msg, code   nxdomain servfail refused (REFUSED, or nothing listening: ICMP port
 *                        unreachable) timeout protocol (bad reply, other rcodes) io
 *
 * libldns builds the query and parses the reply and resolv.conf; the transport is ours (a
 * connected UDP socket, TCP on truncation or tcp=true) so that every try has a deadline and
 * errors map to stable codes. For type PTR an IPv4/IPv6 address is turned into its
 * in-addr.arpa/ip6.arpa name. A server must be a numeric IP: this module never resolves a name
 * to find a server. Private to the engine. Depends on: libldns, rbaux.h, Lua 5.4. */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <lauxlib.h>
#include <lua.h>
#include <ldns/ldns.h>

#include "rbaux.h"

#define DNS_MAX_SERVERS 3
#define DNS_MAX_REPLY 65535

static const struct { const char *name; ldns_rr_type type; } dns_types[] = {
	{"A", LDNS_RR_TYPE_A}, {"AAAA", LDNS_RR_TYPE_AAAA}, {"MX", LDNS_RR_TYPE_MX},
	{"TXT", LDNS_RR_TYPE_TXT}, {"PTR", LDNS_RR_TYPE_PTR}, {"CNAME", LDNS_RR_TYPE_CNAME},
	{"NS", LDNS_RR_TYPE_NS}, {"SOA", LDNS_RR_TYPE_SOA}, {NULL, 0}
};

struct dns_query {
	/* inputs, validated before any I/O */
	char qname[260];
	const char *qtype_name;
	ldns_rr_type qtype;
	char servers[DNS_MAX_SERVERS][INET6_ADDRSTRLEN];
	int nservers, port, tcp, retries, recurse;
	double timeout;
	/* owned resources, freed by the caller of lua_pcall */
	uint8_t *wire;             /* query (ldns malloc) */
	size_t wirelen;
	uint8_t *reply;            /* DNS_MAX_REPLY bytes */
	size_t replylen;
	ldns_pkt *pkt;
	ldns_buffer *text;
	/* outcome of the exchange */
	int server_used, used_tcp;
	double ms;
	struct rb_err err;
};

/* A DNS name from a runbook: printable ASCII without spaces, backslashes or control bytes
 * (escapes and IDN must be explicit punycode), 1..253 characters. */
static int valid_name(const char *s, size_t len)
{
	if (len == 0 || len > 253 || strlen(s) != len)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= 0x20 || c >= 0x7f || c == '\\' || c == '"' || c == '(' || c == ')' || c == ';')
			return 0;
	}
	return 1;
}

/* Reads exactly n bytes before the deadline. Returns 0, or -1 with q->err set. */
static int tcp_read_full(struct dns_query *q, int fd, uint8_t *p, size_t n, double deadline,
			 const char *srv)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, p + got, n - got);
		if (r > 0) {
			got += (size_t)r;
			continue;
		}
		if (r == 0) {
			rb_errf(&q->err, "protocol", "%s#%d closed the TCP connection mid-reply", srv, q->port);
			return -1;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			rb_errf(&q->err, rb_errno_code(errno), "%s#%d: %s", srv, q->port, strerror(errno));
			return -1;
		}
		if (rb_wait_fd(fd, POLLIN, deadline) <= 0) {
			rb_errf(&q->err, "timeout", "no reply from %s#%d (TCP) within %.1fs", srv, q->port,
				   q->timeout);
			return -1;
		}
	}
	return 0;
}

static int exchange_tcp(struct dns_query *q, const char *srv, double deadline)
{
	const char *code;
	char msg[256];
	uint8_t len[2];
	size_t sent = 0, total = q->wirelen + 2;
	uint8_t out[2 + 65535];
	int fd = rb_tcp_connect(srv, q->port, NULL, deadline, &code, msg, sizeof msg);

	if (fd < 0) {
		rb_errf(&q->err, code, "DNS over TCP: %s", msg);
		return -1;
	}
	out[0] = (uint8_t)(q->wirelen >> 8);
	out[1] = (uint8_t)(q->wirelen & 0xff);
	memcpy(out + 2, q->wire, q->wirelen);
	while (sent < total) {
		ssize_t w = write(fd, out + sent, total - sent);
		if (w > 0) {
			sent += (size_t)w;
		} else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
			if (rb_wait_fd(fd, POLLOUT, deadline) <= 0) {
				close(fd);
				rb_errf(&q->err, "timeout", "%s#%d (TCP): write timed out", srv, q->port);
				return -1;
			}
		} else {
			int err = errno;
			close(fd);
			rb_errf(&q->err, rb_errno_code(err), "%s#%d (TCP): %s", srv, q->port, strerror(err));
			return -1;
		}
	}
	for (;;) {
		size_t n;
		if (tcp_read_full(q, fd, len, 2, deadline, srv) != 0 ||
		    tcp_read_full(q, fd, q->reply, n = ((size_t)len[0] << 8) | len[1], deadline, srv) != 0) {
			close(fd);
			return -1;
		}
		/* the ID must match; anything else on this connection is not our answer */
		if (n >= 12 && q->reply[0] == q->wire[0] && q->reply[1] == q->wire[1]) {
			q->replylen = n;
			close(fd);
			q->used_tcp = 1;
			return 0;
		}
	}
}

/* One UDP try on a connected socket: only the server's own datagrams arrive, and an ICMP
 * port-unreachable comes back as ECONNREFUSED. Datagrams with another ID are ignored. */
static int exchange_udp(struct dns_query *q, const char *srv, double deadline)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd;

	rb_ip_addr(srv, q->port, &ss, &sl);
	fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rb_errf(&q->err, "io", "socket: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&ss, sl) != 0 || send(fd, q->wire, q->wirelen, 0) < 0) {
		int err = errno;
		close(fd);
		rb_errf(&q->err, rb_errno_code(err), "%s#%d: %s", srv, q->port, strerror(err));
		return -1;
	}
	for (;;) {
		ssize_t r;
		int w = rb_wait_fd(fd, POLLIN, deadline);
		if (w == 0) {
			close(fd);
			rb_errf(&q->err, "timeout", "no reply from %s#%d within %.1fs", srv, q->port, q->timeout);
			return -1;
		}
		r = recv(fd, q->reply, DNS_MAX_REPLY, 0);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r < 0) {
			int err = errno;
			close(fd);
			if (err == ECONNREFUSED)
				rb_errf(&q->err, "refused", "nothing answers DNS on %s#%d (port unreachable)",
					   srv, q->port);
			else
				rb_errf(&q->err, rb_errno_code(err), "%s#%d: %s", srv, q->port, strerror(err));
			return -1;
		}
		if (r >= 12 && q->reply[0] == q->wire[0] && q->reply[1] == q->wire[1] &&
		    (q->reply[2] & 0x80)) {
			q->replylen = (size_t)r;
			close(fd);
			return 0;
		}
	}
}

/* Asks each server in turn, sharing the timeout between servers and UDP tries; falls back to
 * TCP when the UDP reply is truncated. Returns 0 with q->reply filled, or -1 with q->err. */
static int dns_exchange(struct dns_query *q)
{
	double t0 = rb_mono_now(), end = t0 + q->timeout;

	for (int s = 0; s < q->nservers; s++) {
		const char *srv = q->servers[s];
		double server_end = t0 + q->timeout * (s + 1) / q->nservers;
		int tries = q->tcp ? 1 : q->retries + 1;
		q->server_used = s;
		for (int i = 0; i < tries; i++) {
			double now = rb_mono_now();
			double try_end = now + (server_end - now) / (tries - i);
			int r = q->tcp ? exchange_tcp(q, srv, server_end) : exchange_udp(q, srv, try_end);
			if (r == 0 && !q->tcp && (q->reply[2] & 0x02))
				r = exchange_tcp(q, srv, end);   /* TC bit: the whole answer needs TCP */
			if (r == 0) {
				q->ms = (rb_mono_now() - t0) * 1000.0;
				return 0;
			}
			if (strcmp(q->err.code, "timeout") != 0)
				break;   /* refused/unreachable: another try to this server will not help */
		}
	}
	return -1;
}

/* ---------------------------------------------------------------- reply -> Lua */

static void push_rdf(lua_State *L, struct dns_query *q, const ldns_rdf *rdf)
{
	ldns_buffer_clear(q->text);
	if (rdf == NULL || ldns_rdf2buffer_str(q->text, rdf) != LDNS_STATUS_OK)
		lua_pushliteral(L, "");
	else
		lua_pushlstring(L, (const char *)ldns_buffer_begin(q->text), ldns_buffer_position(q->text));
}

static void push_rr(lua_State *L, struct dns_query *q, const ldns_rr *rr)
{
	ldns_rr_type t = ldns_rr_get_type(rr);
	size_t n = ldns_rr_rd_count(rr);

	lua_createtable(L, 0, 8);
	push_rdf(L, q, ldns_rr_owner(rr));
	lua_setfield(L, -2, "name");
	ldns_buffer_clear(q->text);
	ldns_rr_type2buffer_str(q->text, t);
	lua_pushlstring(L, (const char *)ldns_buffer_begin(q->text), ldns_buffer_position(q->text));
	lua_setfield(L, -2, "type");
	lua_pushinteger(L, (lua_Integer)ldns_rr_ttl(rr));
	lua_setfield(L, -2, "ttl");
	ldns_buffer_clear(q->text);
	ldns_rr_class2buffer_str(q->text, ldns_rr_get_class(rr));
	lua_pushlstring(L, (const char *)ldns_buffer_begin(q->text), ldns_buffer_position(q->text));
	lua_setfield(L, -2, "class");

	/* data: the rdata fields in presentation form, as dig prints them */
	ldns_buffer_clear(q->text);
	for (size_t i = 0; i < n; i++) {
		if (i)
			ldns_buffer_printf(q->text, " ");
		ldns_rdf2buffer_str(q->text, ldns_rr_rdf(rr, i));
	}
	lua_pushlstring(L, (const char *)ldns_buffer_begin(q->text), ldns_buffer_position(q->text));
	lua_setfield(L, -2, "data");

	switch (t) {
	case LDNS_RR_TYPE_A: case LDNS_RR_TYPE_AAAA:
		push_rdf(L, q, ldns_rr_rdf(rr, 0));
		lua_setfield(L, -2, "address");
		break;
	case LDNS_RR_TYPE_MX:
		if (n == 2) {
			lua_pushinteger(L, ldns_rdf2native_int16(ldns_rr_rdf(rr, 0)));
			lua_setfield(L, -2, "preference");
			push_rdf(L, q, ldns_rr_rdf(rr, 1));
			lua_setfield(L, -2, "exchange");
		}
		break;
	case LDNS_RR_TYPE_CNAME: case LDNS_RR_TYPE_PTR: case LDNS_RR_TYPE_NS:
		push_rdf(L, q, ldns_rr_rdf(rr, 0));
		lua_setfield(L, -2, "target");
		break;
	case LDNS_RR_TYPE_TXT: {
		/* each rdf is a character-string on the wire: one length byte, then the bytes */
		luaL_Buffer b;
		lua_createtable(L, (int)n, 0);
		for (size_t i = 0; i < n; i++) {
			const ldns_rdf *f = ldns_rr_rdf(rr, i);
			size_t len = ldns_rdf_size(f) ? ldns_rdf_data(f)[0] : 0;
			if (len + 1 > ldns_rdf_size(f))
				len = 0;
			lua_pushlstring(L, (const char *)ldns_rdf_data(f) + 1, len);
			lua_rawseti(L, -2, (lua_Integer)i + 1);
		}
		lua_setfield(L, -2, "strings");
		luaL_buffinit(L, &b);
		for (size_t i = 0; i < n; i++) {
			const ldns_rdf *f = ldns_rr_rdf(rr, i);
			size_t len = ldns_rdf_size(f) ? ldns_rdf_data(f)[0] : 0;
			if (len + 1 <= ldns_rdf_size(f))
				luaL_addlstring(&b, (const char *)ldns_rdf_data(f) + 1, len);
		}
		luaL_pushresult(&b);
		lua_setfield(L, -2, "text");
		break;
	}
	default:
		break;
	}
}

static void push_section(lua_State *L, struct dns_query *q, const ldns_rr_list *list,
			 const char *field)
{
	size_t n = list ? ldns_rr_list_rr_count(list) : 0;
	lua_createtable(L, (int)n, 0);
	for (size_t i = 0; i < n; i++) {
		push_rr(L, q, ldns_rr_list_rr(list, i));
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	lua_setfield(L, -2, field);
}

static void push_flag(lua_State *L, const char *name, int v)
{
	lua_pushboolean(L, v);
	lua_setfield(L, -2, name);
}

/* Runs under lua_pcall: every Lua allocation may raise, the C resources stay in *q. */
static int dns_query_protected(lua_State *L)
{
	struct dns_query *q = lua_touserdata(L, 1);
	ldns_pkt_rcode rc;
	const ldns_rr_list *question;
	const char *srv;

	if (dns_exchange(q) != 0)
		return rb_fail(L, q->err.msg, q->err.code);
	srv = q->servers[q->server_used];
	if (ldns_wire2pkt(&q->pkt, q->reply, q->replylen) != LDNS_STATUS_OK)
		return rb_failf(L, "protocol", "unparseable DNS reply from %s#%d", srv, q->port);
	question = ldns_pkt_question(q->pkt);
	if (question && ldns_rr_list_rr_count(question) == 1) {
		const ldns_rr *qr = ldns_rr_list_rr(question, 0);
		ldns_buffer_clear(q->text);
		ldns_rdf2buffer_str(q->text, ldns_rr_owner(qr));
		ldns_buffer_write_u8(q->text, 0);
		if (ldns_rr_get_type(qr) != q->qtype ||
		    strcasecmp((const char *)ldns_buffer_begin(q->text), q->qname) != 0)
			return rb_failf(L, "protocol", "%s#%d answered a different question (%s)", srv,
					q->port, (const char *)ldns_buffer_begin(q->text));
	}
	rc = ldns_pkt_get_rcode(q->pkt);
	if (rc != LDNS_RCODE_NOERROR) {
		const char *code = rc == LDNS_RCODE_NXDOMAIN ? "nxdomain"
				 : rc == LDNS_RCODE_SERVFAIL ? "servfail"
				 : rc == LDNS_RCODE_REFUSED ? "refused" : "protocol";
		ldns_buffer_clear(q->text);
		ldns_pkt_rcode2buffer_str(q->text, rc);
		ldns_buffer_write_u8(q->text, 0);
		return rb_failf(L, code, "%s %s: %s from %s#%d", q->qtype_name, q->qname,
				(const char *)ldns_buffer_begin(q->text), srv, q->port);
	}
	lua_createtable(L, 0, 12);
	lua_pushliteral(L, "NOERROR");
	lua_setfield(L, -2, "rcode");
	push_section(L, q, ldns_pkt_answer(q->pkt), "answers");
	push_section(L, q, ldns_pkt_authority(q->pkt), "authority");
	push_section(L, q, ldns_pkt_additional(q->pkt), "additional");
	/* nodata: the name exists but holds no record of this type (CNAMEs alone count too) */
	{
		int found = 0;
		const ldns_rr_list *a = ldns_pkt_answer(q->pkt);
		for (size_t i = 0; a && i < ldns_rr_list_rr_count(a); i++)
			if (ldns_rr_get_type(ldns_rr_list_rr(a, i)) == q->qtype)
				found = 1;
		lua_pushboolean(L, !found);
		lua_setfield(L, -2, "nodata");
	}
	lua_createtable(L, 0, 4);
	push_flag(L, "aa", ldns_pkt_aa(q->pkt));
	push_flag(L, "tc", ldns_pkt_tc(q->pkt));
	push_flag(L, "rd", ldns_pkt_rd(q->pkt));
	push_flag(L, "ra", ldns_pkt_ra(q->pkt));
	lua_setfield(L, -2, "flags");
	lua_pushstring(L, q->qname);
	lua_setfield(L, -2, "qname");
	lua_pushstring(L, q->qtype_name);
	lua_setfield(L, -2, "qtype");
	lua_pushstring(L, srv);
	lua_setfield(L, -2, "server");
	lua_pushinteger(L, q->port);
	lua_setfield(L, -2, "port");
	lua_pushboolean(L, q->used_tcp);
	lua_setfield(L, -2, "tcp");
	lua_pushnumber(L, q->ms);
	lua_setfield(L, -2, "ms");
	return 1;
}

/* ---------------------------------------------------------------- argument checking */

/* For PTR, an address becomes its reverse name; anything else must already be a name. */
static void set_qname(lua_State *L, struct dns_query *q, const char *name)
{
	unsigned char a[16];
	char *p = q->qname;
	size_t left = sizeof q->qname;

	if (q->qtype == LDNS_RR_TYPE_PTR && inet_pton(AF_INET, name, a) == 1) {
		snprintf(q->qname, sizeof q->qname, "%u.%u.%u.%u.in-addr.arpa.", a[3], a[2], a[1], a[0]);
		return;
	}
	if (q->qtype == LDNS_RR_TYPE_PTR && inet_pton(AF_INET6, name, a) == 1) {
		static const char hex[] = "0123456789abcdef";
		for (int i = 15; i >= 0; i--) {
			snprintf(p, left, "%c.%c.", hex[a[i] & 15], hex[a[i] >> 4]);
			p += 4;
			left -= 4;
		}
		snprintf(p, left, "ip6.arpa.");
		return;
	}
	if (!valid_name(name, strlen(name)))
		luaL_error(L, "bad DNS name '%s' (printable ASCII without spaces, 1..253 chars)", name);
	snprintf(q->qname, sizeof q->qname, "%s%s", name, name[strlen(name) - 1] == '.' ? "" : ".");
}

/* Fills q->servers from resolv.conf (production: no server in the inventory; path NULL is
 * /etc/resolv.conf). */
static int system_servers(struct dns_query *q, const char *path)
{
	ldns_resolver *res = NULL;
	ldns_buffer *b;
	if (ldns_resolver_new_frm_file(&res, path) != LDNS_STATUS_OK || res == NULL)
		return -1;
	b = ldns_buffer_new(64);
	for (size_t i = 0; b && i < ldns_resolver_nameserver_count(res) && q->nservers < DNS_MAX_SERVERS; i++) {
		ldns_buffer_clear(b);
		if (ldns_rdf2buffer_str(b, ldns_resolver_nameservers(res)[i]) != LDNS_STATUS_OK)
			continue;
		ldns_buffer_write_u8(b, 0);
		snprintf(q->servers[q->nservers++], INET6_ADDRSTRLEN, "%s", (const char *)ldns_buffer_begin(b));
	}
	ldns_buffer_free(b);
	ldns_resolver_deep_free(res);
	return q->nservers > 0 ? 0 : -1;
}

static const char *const query_options[] = {
	"name", "type", "server", "port", "timeout", "tcp", "retries", "recurse", "resolv_conf", NULL
};

/* Checks the options at 1 into q (the name, type, port, retries, timeout, flags, servers).
 * Raises on misuse; returns 0, or 3 with nil, msg, "io" pushed when no server is configured. */
static int read_query_options(lua_State *L, struct dns_query *q)
{
	const char *name, *type, *server, *resolv_conf;
	rb_check_keys(L, 1, query_options, "dns.query");
	name = rb_opt_required(L, 1, "name");
	type = rb_opt_string(L, 1, "type", "A");
	server = rb_opt_string(L, 1, "server", NULL);
	resolv_conf = rb_opt_string(L, 1, "resolv_conf", NULL);
	q->port = (int)rb_opt_int(L, 1, "port", 53, 1, 65535);
	q->retries = (int)rb_opt_int(L, 1, "retries", 1, 0, 10);
	q->timeout = rb_opt_timeout(L, 1, "timeout", 5.0);
	q->tcp = rb_opt_bool(L, 1, "tcp", 0);
	q->recurse = rb_opt_bool(L, 1, "recurse", 1);
	for (int i = 0; dns_types[i].name; i++)
		if (strcmp(type, dns_types[i].name) == 0) {
			q->qtype = dns_types[i].type;
			q->qtype_name = dns_types[i].name;
		}
	if (q->qtype_name == NULL)
		luaL_error(L, "unsupported DNS type '%s'", type);
	set_qname(L, q, name);
	if (server) {
		struct sockaddr_storage ss;
		socklen_t sl;
		if (rb_ip_addr(server, 53, &ss, &sl) != 0)
			luaL_error(L, "option 'server' must be a numeric IP address (got '%s')", server);
		snprintf(q->servers[0], INET6_ADDRSTRLEN, "%s", server);
		q->nservers = 1;
	} else if (system_servers(q, resolv_conf) != 0) {
		return rb_failf(L, "io", "no nameserver in %s", resolv_conf ? resolv_conf : "/etc/resolv.conf");
	}
	return 0;
}

/* The query in wire format, the reply buffer and the text buffer, all C-owned in q. Returns 0,
 * or with nothing left allocated -1 (ldns refuses the name: a label over 63 bytes ...) or -2
 * (out of memory). */
static int build_wire(struct dns_query *q)
{
	ldns_rdf *dname = ldns_dname_new_frm_str(q->qname);
	ldns_pkt *query;
	int status;
	if (dname == NULL)
		return -1;
	query = ldns_pkt_query_new(dname, q->qtype, LDNS_RR_CLASS_IN, q->recurse ? LDNS_RD : 0);
	if (query == NULL) {
		ldns_rdf_deep_free(dname);
		return -2;
	}
	ldns_pkt_set_random_id(query);
	ldns_pkt_set_edns_udp_size(query, 1232);
	status = ldns_pkt2wire(&q->wire, query, &q->wirelen);
	ldns_pkt_free(query);
	q->reply = malloc(DNS_MAX_REPLY);
	q->text = ldns_buffer_new(256);
	if (status != LDNS_STATUS_OK || q->reply == NULL || q->text == NULL) {
		free(q->wire);
		free(q->reply);
		if (q->text)
			ldns_buffer_free(q->text);
		q->wire = NULL;
		q->reply = NULL;
		q->text = NULL;
		return -2;
	}
	return 0;
}

/* dns.query(opts): see the file comment. */
static int dns_query(lua_State *L)
{
	struct dns_query *q;
	int status;

	luaL_checktype(L, 1, LUA_TTABLE);
	q = lua_newuserdatauv(L, sizeof *q, 0);   /* Lua-owned: freed by the GC on any error */
	memset(q, 0, sizeof *q);
	if (read_query_options(L, q) != 0)
		return 3;
	/* C-owned from here: nothing may raise until they are freed */
	if ((status = build_wire(q)) != 0)
		return status == -1 ? luaL_error(L, "bad DNS name '%s'", q->qname)
		                    : luaL_error(L, "out of memory building the DNS query");
	lua_pushcfunction(L, dns_query_protected);
	lua_pushlightuserdata(L, q);
	status = lua_pcall(L, 1, 3, 0);
	free(q->wire);
	free(q->reply);
	ldns_buffer_free(q->text);
	if (q->pkt)
		ldns_pkt_free(q->pkt);
	if (status != LUA_OK)
		return lua_error(L);
	if (lua_isnil(L, -3))
		return 3;
	lua_pop(L, 2);
	return 1;
}

static const luaL_Reg dns_funcs[] = {
	{"query", dns_query},
	{NULL, NULL}
};

int luaopen_runbook_dns(lua_State *L)
{
	luaL_newlib(L, dns_funcs);
	return 1;
}
