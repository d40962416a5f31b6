/* SPDX-License-Identifier: MIT */
/* http.c - the HTTP side of `modelhost serve` on GNU libmicrohttpd: routes,
 * the API key, the body limit, error objects, and the waits on the engine.
 *
 * A thread per connection (bounded by max_connections): a handler may block
 * while its request runs, waking every WAIT_MS to see whether the client
 * hung up, so a client that goes away frees its sequence within a step.
 * Idle and slow clients time out after --timeout seconds (libmicrohttpd's
 * connection timeout). */
#define _GNU_SOURCE /* POLLRDHUP */
#include "server/server.h"
#include "server/metrics.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 100

/* Requests between their first byte and their last: SIGTERM waits for
 * them to reach zero before closing the connections. */
static pthread_mutex_t open_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t open_cond = PTHREAD_COND_INITIALIZER;
static int open_requests;

typedef struct conn {
	char *body;
	size_t len, cap;
	int too_big;
} conn;

/* The client closed its end (or the socket failed). */
static int hung_up(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLRDHUP };
	return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

static int conn_fd(struct MHD_Connection *mc)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
	return ci ? ci->connect_fd : -1;
}

static enum MHD_Result send_body(struct MHD_Connection *mc, const char *path, int status,
				 char *body, const char *type, int retry_after)
{
	struct MHD_Response *rs =
		MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
	if (!rs) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(rs, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (retry_after) {
		char b[16];
		snprintf(b, sizeof b, "%d", retry_after);
		MHD_add_response_header(rs, MHD_HTTP_HEADER_RETRY_AFTER, b);
	}
	if (status == 401)
		MHD_add_response_header(rs, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
	enum MHD_Result r = MHD_queue_response(mc, (unsigned)status, rs);
	MHD_destroy_response(rs);
	metrics_request(path, status);
	return r;
}

static enum MHD_Result send_json(struct MHD_Connection *mc, const char *path, int status, char *j)
{
	if (!j)
		return MHD_NO;
	return send_body(mc, path, status, j, "application/json", 0);
}

static enum MHD_Result send_error(struct MHD_Connection *mc, const char *path, const api_error *e)
{
	char *j = api_error_json(e);
	if (!j)
		return MHD_NO;
	return send_body(mc, path, e->status, j, "application/json",
			 e->status == 503 ? 1 : 0);
}

static enum MHD_Result fail(struct MHD_Connection *mc, const char *path, int status,
			    const char *param, const char *msg)
{
	api_error e;
	api_error_set(&e, status, param, "%s", msg);
	return send_error(mc, path, &e);
}

/* Constant time in the key's content: every byte of the longer of the two
 * is looked at whatever matches. */
static int key_ok(const char *want, const char *got)
{
	if (!got)
		return 0;
	size_t a = strlen(want), b = strlen(got), n = a > b ? a : b;
	unsigned char d = a != b;
	for (size_t i = 0; i < n; i++)
		d |= (unsigned char)(i < a ? want[i] : 0) ^ (unsigned char)(i < b ? got[i] : 0);
	return d == 0;
}

static int authorized(server *sv, struct MHD_Connection *mc)
{
	if (!sv->c.api_key)
		return 1;
	const char *h = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Authorization");
	if (h && strncasecmp(h, "Bearer ", 7) == 0)
		return key_ok(sv->c.api_key, h + 7);
	return key_ok(sv->c.api_key, NULL);
}

/* ---- completions ------------------------------------------------------------------ */

typedef struct stream {
	server *sv;
	api_call c;
	int fd;
	double quiet_since;     /* when the last bytes went out */
	char *out;
	size_t out_len, out_off;
	int end;
} stream;

static double keepalive_secs(const server *sv)
{
	return sv->c.timeout > 30 ? 10 : sv->c.timeout / 3.0;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	stream *st = cls;
	(void)pos;
	for (int idle = 0; st->out_off == st->out_len; idle++) {
		if (st->end)
			return MHD_CONTENT_READER_END_OF_STREAM;
		free(st->out);
		st->out = api_events(st->sv, &st->c, &st->end);
		st->out_off = 0;
		st->out_len = st->out ? strlen(st->out) : 0;
		if (!st->out) {
			engine_cancel(st->sv->eng, st->c.req);
			return MHD_CONTENT_READER_END_WITH_ERROR;
		}
		if (st->out_len)
			break;
		if (hung_up(st->fd)) {
			engine_cancel(st->sv->eng, st->c.req);
			return MHD_CONTENT_READER_END_WITH_ERROR;
		}
		/* a long prompt or a long queue: an SSE comment now and then, so
		 * that neither the idle timeout nor a proxy drops the stream */
		if (mh_now() - st->quiet_since > keepalive_secs(st->sv)) {
			static const char ka[] = ": waiting\n\n";
			free(st->out);
			st->out = strdup(ka);
			st->out_off = 0;
			st->out_len = st->out ? strlen(ka) : 0;
			break;
		}
		engine_wait(st->sv->eng, st->c.req, st->c.seen, WAIT_MS);
	}
	st->quiet_since = mh_now();
	size_t n = st->out_len - st->out_off;
	if (n > max)
		n = max;
	memcpy(buf, st->out + st->out_off, n);
	st->out_off += n;
	return (ssize_t)n;
}

static void stream_free(void *cls)
{
	stream *st = cls;
	if (!st->end)
		engine_cancel(st->sv->eng, st->c.req);
	api_call_free(st->sv, &st->c);
	free(st->out);
	free(st);
}

static enum MHD_Result completion(server *sv, struct MHD_Connection *mc, const char *path,
				  int chat, const cJSON *body)
{
	api_error e;
	api_call c;
	if (api_parse(sv, chat, body, &c, &e) != 0) {
		api_call_free(sv, &c);
		return send_error(mc, path, &e);
	}
	if (engine_submit(sv->eng, c.req) != 0) {
		api_call_free(sv, &c);
		return fail(mc, path, 503, NULL, "the server is busy: every sequence and queue place is taken; retry later");
	}
	int fd = conn_fd(mc);
	if (c.stream) {
		stream *st = calloc(1, sizeof *st);
		struct MHD_Response *rs = st ? MHD_create_response_from_callback(
						       MHD_SIZE_UNKNOWN, 4096, stream_read, st, stream_free)
					     : NULL;
		if (!rs) {
			engine_cancel(sv->eng, c.req);
			api_call_free(sv, &c);
			free(st);
			return MHD_NO;
		}
		st->sv = sv;
		st->c = c;
		st->fd = fd;
		st->quiet_since = mh_now();
		MHD_add_response_header(rs, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
		MHD_add_response_header(rs, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
		MHD_add_response_header(rs, "X-Accel-Buffering", "no"); /* nginx: pass events on */
		enum MHD_Result r = MHD_queue_response(mc, MHD_HTTP_OK, rs);
		MHD_destroy_response(rs);
		metrics_request(path, 200);
		return r;
	}
	/* the idle timeout is for the client, not for the model: off while it
	 * runs, and back on (counting from now) for sending the reply */
	MHD_set_connection_option(mc, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
	for (;;) {
		engine_wait(sv->eng, c.req, (size_t)-1, WAIT_MS);
		engine_lock(sv->eng);
		int done = c.req->done;
		engine_unlock(sv->eng);
		if (done)
			break;
		if (hung_up(fd)) {
			engine_cancel(sv->eng, c.req);
			api_call_free(sv, &c);
			metrics_request(path, 499);
			return MHD_NO;
		}
	}
	MHD_set_connection_option(mc, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)sv->c.timeout);
	char *out = api_result(sv, &c, &e);
	api_call_free(sv, &c);
	return out ? send_json(mc, path, 200, out) : send_error(mc, path, &e);
}

/* ---- routes ------------------------------------------------------------------------ */

static enum MHD_Result route(server *sv, struct MHD_Connection *mc, const char *url,
			     const char *method, conn *cn)
{
	static const struct {
		const char *path, *method;
		int open; /* needs no key */
	} routes[] = {
		{ "/health", "GET", 1 },          { "/v1/models", "GET", 0 },
		{ "/metrics", "GET", 0 },         { "/v1/completions", "POST", 0 },
		{ "/tokenize", "POST", 0 },       { "/detokenize", "POST", 0 },
		{ "/admin/reload", "POST", 0 },   { "/v1/chat/completions", "POST", 0 },
	};
	int k = -1;
	for (size_t i = 0; i < sizeof routes / sizeof *routes; i++)
		if (strcmp(url, routes[i].path) == 0)
			k = (int)i;
	if (k < 0) {
		char msg[300];
		snprintf(msg, sizeof msg, "no such endpoint: %.200s", url);
		return fail(mc, "other", 404, NULL, msg);
	}
	const char *path = routes[k].path;
	if (!routes[k].open && !authorized(sv, mc))
		return fail(mc, path, 401, NULL, "a valid API key is needed: 'Authorization: Bearer KEY'");
	if (strcmp(method, routes[k].method) != 0 &&
	    !(strcmp(method, "HEAD") == 0 && strcmp(routes[k].method, "GET") == 0)) {
		char msg[120];
		snprintf(msg, sizeof msg, "%s takes %s requests", path, routes[k].method);
		return fail(mc, path, 405, NULL, msg);
	}
	if (cn->too_big) {
		char msg[120];
		snprintf(msg, sizeof msg, "the body is larger than the limit of %zu bytes",
			 sv->c.body_limit);
		return fail(mc, path, 413, NULL, msg);
	}
	engine_stats st;
	engine_get_stats(sv->eng, &st);
	if (strcmp(path, "/health") == 0) {
		if (!st.ready) {
			char *b = strdup("{\"status\":\"loading\"}");
			return b ? send_body(mc, path, 503, b, "application/json", 1) : MHD_NO;
		}
		return send_json(mc, path, 200, strdup("{\"status\":\"ok\"}"));
	}
	if (strcmp(path, "/metrics") == 0) {
		char *m = metrics_render(&st);
		return m ? send_body(mc, path, 200, m, "text/plain; version=0.0.4", 0) : MHD_NO;
	}
	if (!st.ready)
		return fail(mc, path, 503, NULL, "the model is loading or the server is stopping");
	api_error e;
	if (strcmp(path, "/v1/models") == 0) {
		char *j = api_models(sv, &e);
		return j ? send_json(mc, path, 200, j) : send_error(mc, path, &e);
	}
	if (strcmp(path, "/admin/reload") == 0) {
		char msg[MH_ERRLEN + 400];
		if (engine_reload(sv->eng, msg, sizeof msg, 1000 * sv->c.timeout) != 0)
			return fail(mc, path, 500, NULL, msg);
		cJSON *o = cJSON_CreateObject();
		engine_get_stats(sv->eng, &st);
		cJSON_AddStringToObject(o, "status", "ok");
		cJSON_AddStringToObject(o, "message", msg);
		cJSON_AddStringToObject(o, "plugin", st.plugin);
		cJSON_AddStringToObject(o, "version", st.version);
		char *j = cJSON_PrintUnformatted(o);
		cJSON_Delete(o);
		return send_json(mc, path, 200, j);
	}
	/* the rest take a JSON body */
	if (!cn->body || tokenizer_utf8_valid_prefix(cn->body, cn->len) != cn->len)
		return fail(mc, path, 400, NULL,
			    cn->body ? "the body is not valid UTF-8" : "the body is empty: a JSON object is expected");
	cJSON *body = cJSON_ParseWithLength(cn->body, cn->len);
	if (!body)
		return fail(mc, path, 400, NULL, "the body is not valid JSON");
	enum MHD_Result r;
	if (!cJSON_IsObject(body)) {
		r = fail(mc, path, 400, NULL, "the body must be a JSON object");
	} else if (strcmp(path, "/tokenize") == 0 || strcmp(path, "/detokenize") == 0) {
		char *j = path[1] == 't' ? api_tokenize(sv, body, &e) : api_detokenize(sv, body, &e);
		r = j ? send_json(mc, path, 200, j) : send_error(mc, path, &e);
	} else {
		r = completion(sv, mc, path, strcmp(path, "/v1/chat/completions") == 0, body);
	}
	cJSON_Delete(body);
	return r;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
				  const char *method, const char *version,
				  const char *upload, size_t *upload_size, void **con_cls)
{
	server *sv = cls;
	conn *cn = *con_cls;
	(void)version;
	if (!cn) {
		if (!(cn = calloc(1, sizeof *cn)))
			return MHD_NO;
		*con_cls = cn;
		pthread_mutex_lock(&open_mu);
		open_requests++;
		pthread_mutex_unlock(&open_mu);
		const char *cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND,
							     MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && strtoull(cl, NULL, 10) > sv->c.body_limit)
			cn->too_big = 1;
		return MHD_YES;
	}
	if (*upload_size) {
		size_t n = *upload_size;
		*upload_size = 0;
		if (cn->too_big || n > sv->c.body_limit - cn->len) {
			cn->too_big = 1;
			free(cn->body);
			cn->body = NULL;
			cn->len = 0;
			return MHD_YES;
		}
		if (cn->len + n + 1 > cn->cap) {
			size_t cap = cn->cap ? cn->cap : 4096;
			while (cap < cn->len + n + 1)
				cap *= 2;
			char *b = realloc(cn->body, cap);
			if (!b)
				return MHD_NO;
			cn->body = b;
			cn->cap = cap;
		}
		memcpy(cn->body + cn->len, upload, n);
		cn->len += n;
		cn->body[cn->len] = 0;
		return MHD_YES;
	}
	return route(sv, mc, url, method, cn);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	conn *cn = *con_cls;
	(void)cls, (void)mc, (void)toe;
	if (cn) {
		free(cn->body);
		free(cn);
		pthread_mutex_lock(&open_mu);
		if (--open_requests == 0)
			pthread_cond_broadcast(&open_cond);
		pthread_mutex_unlock(&open_mu);
	}
	*con_cls = NULL;
}

static void on_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	(void)cls;
	vsnprintf(msg, sizeof msg, fmt, ap);
	fprintf(stderr, "modelhost: serve: http: %s\n", mh_one_line(msg));
}

int http_start(server *sv, char *err)
{
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
	unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
			 MHD_USE_ITC | MHD_USE_ERROR_LOG | MHD_USE_POLL;
	if (inet_pton(AF_INET, sv->c.host, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)sv->c.port);
	} else if (inet_pton(AF_INET6, sv->c.host, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)sv->c.port);
		flags |= MHD_USE_IPv6;
	} else {
		mh_errf(err, "serve: --host '%s' is not an IPv4 or IPv6 address", sv->c.host);
		return -1;
	}
	sv->d = MHD_start_daemon(flags, (uint16_t)sv->c.port, NULL, NULL, on_request, sv,
				 MHD_OPTION_EXTERNAL_LOGGER, on_log, sv,
				 MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				 MHD_OPTION_CONNECTION_LIMIT, (unsigned)sv->c.max_connections,
				 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)sv->c.timeout,
				 MHD_OPTION_NOTIFY_COMPLETED, on_completed, sv,
				 MHD_OPTION_END);
	if (!sv->d) {
		mh_errf(err, "serve: cannot listen on %s port %d (in use, or not an address of this machine)",
			sv->c.host, sv->c.port);
		return -1;
	}
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(sv->d, MHD_DAEMON_INFO_BIND_PORT);
	sv->port = di ? di->port : sv->c.port;
	return 0;
}

void http_quiesce(server *sv)
{
	if (sv->d) {
		MHD_socket s = MHD_quiesce_daemon(sv->d);
		if (s != MHD_INVALID_SOCKET)
			close(s);
	}
}

void http_wait_idle(double deadline)
{
	pthread_mutex_lock(&open_mu);
	while (open_requests > 0 && mh_now() < deadline) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += WAIT_MS * 1000000L;
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&open_cond, &open_mu, &ts);
	}
	pthread_mutex_unlock(&open_mu);
}

void http_stop(server *sv)
{
	if (sv->d)
		MHD_stop_daemon(sv->d);
	sv->d = NULL;
}
