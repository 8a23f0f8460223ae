/* config.c — table-driven parser and validator for milterd.conf (through config_ini.c). */
#include <sys/types.h>
#include <sys/stat.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "config.h"
#include "dname.h"
#include "log.h"

enum config_type {
	CT_STRING,	/* any non-empty text */
	CT_OPTSTRING,	/* text, may be empty */
	CT_INT,		/* decimal in [min, max] */
	CT_MODE,	/* octal file mode */
	CT_SOCKET,	/* libmilter socket spec */
	CT_CONNINFO,	/* libpq conninfo, checked by libpq itself */
	CT_FILE,	/* readable file */
	CT_OPTFILE,	/* readable file, or empty */
	CT_ADDRESS,	/* local@domain without subaddress */
	CT_OPTADDRESS,	/* local@domain, or empty */
	CT_USER,	/* a known user, or empty */
	CT_OPTEXEC,	/* an executable file (absolute path), or empty */
	CT_OWNER,	/* user, user:group or :group, all known; or empty */
	CT_NAME,	/* a display name: UTF-8 text, no control character, no <>" */
	CT_RESOLVER,	/* "system" or IP[@port] */
	CT_LOGLEVEL,
	CT_FACILITY,
	CT_HOSTNAME,	/* authserv-id: a hostname-like token */
	CT_NETLIST,	/* CIDR blocks, space or comma separated */
	CT_DIR,		/* readable directory */
	CT_LISTEN,	/* loopback IPv4:PORT, or empty */
	CT_DURATION,	/* seconds, written 3600, 90s, 30m, 12h, 7d, 2w; in [min, max] */
	CT_INSTANCE,	/* a name for logs and evidence: printable ASCII, no space */
};

struct config_key {
	const char	*name;
	enum config_type type;
	size_t		 offset;
	const char	*def;		/* default, as it would be written */
	int		 reloadable;	/* may change on SIGHUP */
	long		 min, max;	/* CT_INT */
};

#define OFF(f) offsetof(struct config, f)

static const struct config_key config_keys[] = {
	{ "socket",		CT_SOCKET,	OFF(socket), "unix:/run/milterd/milterd.sock", 0, 0, 0 },
	{ "socket_mode",	CT_MODE,	OFF(socket_mode), "0660", 0, 0, 0777 },
	{ "socket_owner",	CT_OWNER,	OFF(socket_owner), "", 0, 0, 0 },
	{ "workers",		CT_INT,		OFF(workers), "16", 0, 1, 1024 },
	{ "active_workers",	CT_INT,		OFF(active_workers), "0", 0, 0, 1024 },
	{ "milter_timeout",	CT_INT,		OFF(milter_timeout), "7210", 1, 1, 86400 },
	{ "database",		CT_CONNINFO,	OFF(database), "dbname=milterd", 0, 0, 0 },
	{ "db_pool_size",	CT_INT,		OFF(db_pool_size), "8", 0, 1, 256 },
	{ "db_timeout",		CT_INT,		OFF(db_timeout), "5", 0, 1, 300 },
	{ "db_commit_timeout",	CT_INT,		OFF(db_commit_timeout), "10", 0, 1, 300 },
	{ "policy",		CT_FILE,	OFF(policy), SYSCONFDIR "/policies/gouv-fr.conf", 1, 0, 0 },
	{ "verify_address",	CT_ADDRESS,	OFF(verify_address), "verify@certify.example.org", 1, 0, 0 },
	{ "authserv_id",	CT_HOSTNAME,	OFF(authserv_id), "", 1, 0, 0 },
	{ "dns_resolver",	CT_RESOLVER,	OFF(dns_resolver), "system", 0, 0, 0 },
	{ "dns_trust_anchor",	CT_OPTFILE,	OFF(dns_trust_anchor), "", 0, 0, 0 },
	{ "dns_timeout",	CT_INT,		OFF(dns_timeout), "5", 0, 1, 60 },
	{ "internal_networks",	CT_NETLIST,	OFF(internal_networks), "", 1, 0, 0 },
	{ "user",		CT_USER,	OFF(user), "", 0, 0, 0 },
	{ "pidfile",		CT_OPTSTRING,	OFF(pidfile), "", 0, 0, 0 },
	{ "templates",		CT_DIR,		OFF(templates), DATADIR "/templates", 1, 0, 0 },
	{ "service_name",	CT_NAME,	OFF(service_name), "certify", 1, 0, 0 },
	{ "challenge_from",	CT_OPTADDRESS,	OFF(challenge_from), "", 1, 0, 0 },
	{ "sendmail_path",	CT_STRING,	OFF(sendmail_path), "/usr/sbin/sendmail", 1, 0, 0 },
	{ "sendmail_timeout",	CT_INT,		OFF(sendmail_timeout), "60", 1, 1, 3600 },
	{ "stats_file",		CT_OPTSTRING,	OFF(stats_file), "/run/milterd/stats", 0, 0, 0 },
	{ "stats_listen",	CT_LISTEN,	OFF(stats_listen), "", 0, 0, 0 },
	{ "instance_name",	CT_INSTANCE,	OFF(instance_name), "", 0, 0, 0 },
	{ "evidence_retention",	CT_DURATION,	OFF(evidence_retention), "400d", 1, 86400, 3650L * 86400 },
	{ "request_retention",	CT_DURATION,	OFF(request_retention), "400d", 1, 86400, 3650L * 86400 },
	{ "follow_exec",	CT_OPTEXEC,	OFF(follow_exec), "", 1, 0, 0 },
	{ "log_level",		CT_LOGLEVEL,	OFF(log_level), "info", 1, 0, 0 },
	{ "syslog_facility",	CT_FACILITY,	OFF(syslog_facility), "mail", 0, 0, 0 },
};

#define NKEYS (sizeof(config_keys) / sizeof(config_keys[0]))

struct config_parse {
	const char	*path;
	int		 lineno;
	int		 seen[NKEYS];	/* line where each key was set, 0 if not */
	struct config	*cfg;
	struct buf	*errors;
	int		 nerrors;
};

const char *
config_key_name(size_t i)
{
	return i < NKEYS ? config_keys[i].name : NULL;
}

static void
config_error(struct config_parse *p, int line, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
config_error(struct config_parse *p, int line, const char *key, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	config_file_verror(p->errors, p->path, line, key, fmt, ap);
	va_end(ap);
	p->nerrors++;
}

static int
config_parse_long(const char *v, int base, long *out)
{
	char *end;
	long n;

	if (*v == '\0' || *v == '-' || *v == '+' || isspace((unsigned char)*v))
		return -1;
	errno = 0;
	n = strtol(v, &end, base);
	if (errno != 0 || *end != '\0')
		return -1;
	*out = n;
	return 0;
}

long
config_duration(const char *v)
{
	char *end;
	long n, mult = 1;

	if (!isdigit((unsigned char)*v))
		return -1;
	errno = 0;
	n = strtol(v, &end, 10);
	if (errno != 0)
		return -1;
	switch (*end) {
	case '\0': case 's': break;
	case 'm': mult = 60; break;
	case 'h': mult = 3600; break;
	case 'd': mult = 86400; break;
	case 'w': mult = 7 * 86400; break;
	default: return -1;
	}
	if (*end != '\0' && end[1] != '\0')
		return -1;
	if (n > CONFIG_DURATION_MAX / mult)
		return -1;
	return n * mult;
}

void
config_duration_format(long secs, char *out, size_t size)
{
	static const struct { long unit; char c; } units[] = {
		{ 7 * 86400, 'w' }, { 86400, 'd' }, { 3600, 'h' }, { 60, 'm' },
	};

	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (secs > 0 && secs % units[i].unit == 0) {
			snprintf(out, size, "%ld%c", secs / units[i].unit, units[i].c);
			return;
		}
	snprintf(out, size, "%lds", secs);
}

/* Checks a milter socket spec: {unix|local}:/path, inet:port[@host],
 * inet6:port[@host], or a bare absolute path. */
static const char *
config_check_socket(const char *v)
{
	const char *rest;
	long port;
	char pbuf[16];
	size_t n;

	if (v[0] == '/')
		return NULL;
	if (strncmp(v, "unix:", 5) == 0 || strncmp(v, "local:", 6) == 0) {
		rest = strchr(v, ':') + 1;
		return rest[0] == '/' ? NULL : "unix socket path must be absolute";
	}
	if (strncmp(v, "inet:", 5) == 0)
		rest = v + 5;
	else if (strncmp(v, "inet6:", 6) == 0)
		rest = v + 6;
	else
		return "expected unix:/path, inet:PORT@HOST or inet6:PORT@HOST";
	n = strcspn(rest, "@");
	if (n == 0 || n >= sizeof(pbuf))
		return "missing or bad port";
	memcpy(pbuf, rest, n);
	pbuf[n] = '\0';
	if (config_parse_long(pbuf, 10, &port) == -1 || port < 1 || port > 65535)
		return "port must be a number from 1 to 65535";
	if (rest[n] == '@' && rest[n + 1] == '\0')
		return "empty host after '@'";
	return NULL;
}

static const char *
config_check_resolver(const char *v)
{
	char ip[INET6_ADDRSTRLEN + 1];
	unsigned char addr[sizeof(struct in6_addr)];
	const char *at;
	long port;
	size_t n;

	if (strcmp(v, "system") == 0)
		return NULL;
	at = strrchr(v, '@');
	n = at ? (size_t)(at - v) : strlen(v);
	if (n == 0 || n >= sizeof(ip))
		return "expected 'system' or IP[@port]";
	memcpy(ip, v, n);
	ip[n] = '\0';
	if (inet_pton(AF_INET, ip, addr) != 1 && inet_pton(AF_INET6, ip, addr) != 1)
		return "expected 'system' or IP[@port]: not an IP address";
	if (at != NULL && (config_parse_long(at + 1, 10, &port) == -1 ||
	    port < 1 || port > 65535))
		return "port must be a number from 1 to 65535";
	return NULL;
}

/* Files are read again at each SIGHUP, when a daemon's working directory is /. */
#define CONFIG_ABSOLUTE	"must be an absolute path (it is read again at each reload, from /)"

/* Parses "10.0.0.0/8 192.168.1.1 2001:db8::/32" into cfg->nets. */
static const char *
config_parse_nets(struct config *cfg, const char *v, char *msgbuf, size_t msgsize)
{
	char word[64], *slash;
	struct config_net *nets = NULL, *grown;
	int n = 0;
	long prefix;
	size_t len = 0;
	const char *w = v;	/* the word as written, for the complaint */

	for (;;) {
		v += strspn(v, ", \t");
		if (*v == '\0')
			break;
		len = strcspn(v, ", \t");
		w = v;
		v += len;
		if (len >= sizeof(word))
			goto bad;
		memcpy(word, w, len);
		word[len] = '\0';
		if ((grown = realloc(nets, (size_t)(n + 1) * sizeof(*nets))) == NULL) {
			free(nets);
			return "out of memory";
		}
		nets = grown;
		memset(&nets[n], 0, sizeof(nets[n]));
		if ((slash = strchr(word, '/')) != NULL)
			*slash++ = '\0';
		if (inet_pton(AF_INET, word, nets[n].addr) == 1)
			nets[n].family = AF_INET;
		else if (inet_pton(AF_INET6, word, nets[n].addr) == 1)
			nets[n].family = AF_INET6;
		else
			goto bad;
		prefix = nets[n].family == AF_INET ? 32 : 128;
		if (slash != NULL && (config_parse_long(slash, 10, &prefix) == -1 || prefix < 0 ||
		    prefix > (nets[n].family == AF_INET ? 32 : 128)))
			goto bad;
		nets[n++].prefix = (int)prefix;
	}
	free(cfg->nets);
	cfg->nets = nets;
	cfg->nnets = n;
	return NULL;
bad:
	free(nets);
	snprintf(msgbuf, msgsize, "'%.*s' is not an address or CIDR block like 10.0.0.0/8",
	    (int)(len > 80 ? 80 : len), w);
	return msgbuf;
}

static int
config_net_match(const struct config_net *net, const unsigned char *addr)
{
	int full = net->prefix / 8, rest = net->prefix % 8;

	if (memcmp(net->addr, addr, (size_t)full) != 0)
		return 0;
	return rest == 0 || ((net->addr[full] ^ addr[full]) & (0xff << (8 - rest))) == 0;
}

int
config_internal_client(const struct config *cfg, const char *ip)
{
	unsigned char addr[16];
	int family;

	if (inet_pton(AF_INET, ip, addr) == 1)
		family = AF_INET;
	else if (inet_pton(AF_INET6, ip, addr) == 1)
		family = AF_INET6;
	else
		return 1;	/* unknown or local socket: not an outside client */
	if ((family == AF_INET && addr[0] == 127) ||
	    (family == AF_INET6 && memcmp(addr, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1", 16) == 0))
		return 1;
	for (int i = 0; i < cfg->nnets; i++)
		if (cfg->nets[i].family == family && config_net_match(&cfg->nets[i], addr))
			return 1;
	return 0;
}

/* libpq's parser takes any value; the connection then fails at each attempt
 * ("invalid sslmode value"), every reply getting 451, where -n said OK. The
 * options with a fixed set of values (libpq 15) are checked here. */
static const char *
config_check_conninfo(const PQconninfoOption *opts, char *msgbuf, size_t msgsize)
{
	static const struct {
		const char *key, *values[7];	/* NULL-terminated */
	} enums[] = {
		{ "sslmode", { "disable", "allow", "prefer", "require", "verify-ca",
		  "verify-full", NULL } },
		{ "gssencmode", { "disable", "prefer", "require", NULL } },
		{ "channel_binding", { "disable", "prefer", "require", NULL } },
		{ "target_session_attrs", { "any", "read-write", "read-only", "primary",
		  "standby", "prefer-standby", NULL } },
	};

	for (const PQconninfoOption *o = opts; o->keyword != NULL; o++)
		for (size_t i = 0; o->val != NULL && i < sizeof(enums) / sizeof(enums[0]); i++) {
			const char *const *v = enums[i].values;
			size_t len;

			if (strcmp(o->keyword, enums[i].key) != 0)
				continue;
			while (*v != NULL && strcmp(*v, o->val) != 0)
				v++;
			if (*v != NULL)
				continue;
			len = (size_t)snprintf(msgbuf, msgsize, "%s=%s: expected one of", o->keyword,
			    o->val);
			for (v = enums[i].values; *v != NULL && len < msgsize; v++)
				len += (size_t)snprintf(msgbuf + len, msgsize - len, " %s", *v);
			return msgbuf;
		}
	return NULL;
}

/* Validates one value and stores it; returns NULL or the complaint. The
 * complaint may point into msgbuf. */
static const char *
config_set(struct config *cfg, const struct config_key *k, const char *v,
    char *msgbuf, size_t msgsize)
{
	char **sp = (char **)(void *)((char *)cfg + k->offset);
	int *ip = (int *)(void *)((char *)cfg + k->offset);
	const char *complaint = NULL;
	char *errmsg = NULL;
	PQconninfoOption *opts;
	struct stat st;
	long n;

	switch (k->type) {
	case CT_STRING:
		if (*v == '\0')
			return "must not be empty";
		break;
	case CT_OPTSTRING:
		break;
	case CT_INT:
		if (config_parse_long(v, 10, &n) == -1 || n < k->min || n > k->max) {
			snprintf(msgbuf, msgsize, "'%s' is not a whole number from %ld to %ld",
			    v, k->min, k->max);
			return msgbuf;
		}
		*ip = (int)n;
		return NULL;
	case CT_MODE:
		if (config_parse_long(v, 8, &n) == -1 || n < 0 || n > k->max) {
			snprintf(msgbuf, msgsize, "'%s' is not an octal mode like 0660", v);
			return msgbuf;
		}
		*ip = (int)n;
		return NULL;
	case CT_SOCKET:
		complaint = config_check_socket(v);
		break;
	case CT_CONNINFO:
		opts = PQconninfoParse(v, &errmsg);
		if (opts == NULL) {
			snprintf(msgbuf, msgsize, "not a valid libpq conninfo: %s",
			    errmsg ? str_trim(errmsg) : "out of memory");
			PQfreemem(errmsg);
			return msgbuf;
		}
		complaint = config_check_conninfo(opts, msgbuf, msgsize);
		PQconninfoFree(opts);
		break;
	case CT_DIR:
		if (*v == '\0' || access(v, R_OK | X_OK) == -1) {
			snprintf(msgbuf, msgsize, "cannot read directory '%s': %s", v,
			    *v ? strerror(errno) : "empty");
			return msgbuf;
		}
		if (*v != '/')
			return CONFIG_ABSOLUTE;
		break;
	case CT_OPTFILE:
		if (*v == '\0')
			break;
		/* FALLTHROUGH */
	case CT_FILE:
		if (*v == '\0')
			return "must name a file";
		if (access(v, R_OK) == -1) {
			snprintf(msgbuf, msgsize, "cannot read '%s': %s", v, strerror(errno));
			return msgbuf;
		}
		if (stat(v, &st) == 0 && !S_ISREG(st.st_mode)) {
			snprintf(msgbuf, msgsize, "'%s' is not a file", v);
			return msgbuf;
		}
		if (*v != '/')
			return CONFIG_ABSOLUTE;
		break;
	case CT_ADDRESS: {
		const char *at = strchr(v, '@');

		if (at == NULL || at == v || strchr(at + 1, '@') != NULL ||
		    !dname_valid(at + 1, 1, 1))
			return "expected local@domain, e.g. verify@certify.example.org";
		if (memchr(v, '+', (size_t)(at - v)) != NULL)
			return "the local part must not contain '+': tokens ride as +subaddress";
		for (const char *c = v; c < at; c++)
			if (!isalnum((unsigned char)*c) && strchr("._-", *c) == NULL)
				return "the local part may hold only letters, digits, '.', '_' and '-'";
		break;
	}
	case CT_OPTADDRESS: {
		const char *at = strchr(v, '@');

		if (*v == '\0')
			break;
		if (at == NULL || at == v || strchr(at + 1, '@') != NULL ||
		    !dname_valid(at + 1, 1, 1))
			return "expected empty or local@domain, e.g. certify@example.org";
		for (const char *c = v; c < at; c++)
			if (!isalnum((unsigned char)*c) && strchr("._+-", *c) == NULL)
				return "the local part may hold only letters, digits, '.', '_', '+' and"
				    " '-'";
		break;
	}
	case CT_OPTEXEC:
		if (*v == '\0')
			break;
		if (*v != '/')
			return CONFIG_ABSOLUTE;
		/* access() alone takes a directory (X_OK: searchable). */
		if (access(v, X_OK) == -1 || stat(v, &st) == -1 || !S_ISREG(st.st_mode)) {
			snprintf(msgbuf, msgsize, "'%s' is not an executable file (one program,"
			    " run without a shell, with no arguments of its own)", v);
			return msgbuf;
		}
		break;
	case CT_USER:
		if (*v != '\0' && getpwnam(v) == NULL) {
			snprintf(msgbuf, msgsize, "unknown user '%s'", v);
			return msgbuf;
		}
		break;
	case CT_OWNER: {
		char owner[256], *colon;

		if (str_copy(owner, v, sizeof(owner)) == -1)
			return "too long";
		if ((colon = strchr(owner, ':')) != NULL) {
			*colon++ = '\0';
			if (*colon == '\0' || getgrnam(colon) == NULL) {
				snprintf(msgbuf, msgsize, "unknown group '%s'", colon);
				return msgbuf;
			}
		}
		if (owner[0] != '\0' && getpwnam(owner) == NULL) {
			snprintf(msgbuf, msgsize, "unknown user '%s'", owner);
			return msgbuf;
		}
		break;
	}
	case CT_NAME:
		if (*v == '\0')
			return "must not be empty";
		if (!str_utf8_valid(v))
			return "not UTF-8 text (the file's encoding must be UTF-8)";
		for (const unsigned char *c = (const unsigned char *)v; *c; c++)
			if (*c < ' ' || *c == 0x7f || strchr("<>\"", *c) != NULL)
				return "a display name: no control character, '<', '>' or '\"'";
		break;
	case CT_RESOLVER:
		complaint = config_check_resolver(v);
		break;
	case CT_LOGLEVEL:
		if ((*ip = log_level_parse(v)) == -1)
			return "expected one of err, warning, notice, info, debug";
		return NULL;
	case CT_FACILITY:
		if ((*ip = log_facility_parse(v)) == -1)
			return "expected a syslog facility: mail, daemon, user, local0 ... local7";
		return NULL;
	case CT_HOSTNAME:
		if (*v != '\0' && !dname_valid(v, 1, 1))
			return "expected a hostname-like identifier";
		break;
	case CT_LISTEN: {
		unsigned char a4[4];
		char host[32];
		const char *colon = strrchr(v, ':');
		long port;

		if (*v == '\0')
			break;
		if (colon == NULL || (size_t)(colon - v) >= sizeof(host) ||
		    config_parse_long(colon + 1, 10, &port) == -1 || port < 1 || port > 65535)
			return "expected 127.0.0.1:PORT";
		memcpy(host, v, (size_t)(colon - v));
		host[colon - v] = '\0';
		if (inet_pton(AF_INET, host, a4) != 1 || a4[0] != 127)
			return "the statistics listener must be on loopback (127.0.0.0/8)";
		break;
	}
	case CT_DURATION: {
		long *lp = (long *)(void *)((char *)cfg + k->offset);

		if ((n = config_duration(v)) < k->min || n > k->max) {
			char lo[32], hi[32];

			config_duration_format(k->min, lo, sizeof(lo));
			config_duration_format(k->max, hi, sizeof(hi));
			snprintf(msgbuf, msgsize, "'%s' is not a duration from %s to %s, like"
			    " 400d, 12h or 2w", v, lo, hi);
			return msgbuf;
		}
		*lp = n;
		return NULL;
	}
	case CT_INSTANCE:
		for (const char *c = v; *c; c++)
			if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f)
				return "expected printable ASCII without white space";
		if (strlen(v) > 63)
			return "at most 63 characters (PostgreSQL's application_name)";
		break;
	case CT_NETLIST:
		if ((complaint = config_parse_nets(cfg, v, msgbuf, msgsize)) != NULL)
			return complaint;
		break;
	}
	if (complaint != NULL)
		return complaint;
	free(*sp);
	if ((*sp = strdup(v)) == NULL)
		return "out of memory";
	return NULL;
}

static int
config_handler(void *user, int lineno, const char *section, const char *name,
    const char *value)
{
	struct config_parse *p = user;
	char msg[512];
	const char *complaint, *hint;
	int before = p->nerrors;

	(void)section;
	p->lineno = lineno;
	for (size_t i = 0; i < NKEYS; i++) {
		if (strcmp(name, config_keys[i].name) != 0)
			continue;
		if (p->seen[i]) {
			config_error(p, p->lineno, name, "set twice (first at line %d)", p->seen[i]);
			return -1;
		}
		p->seen[i] = p->lineno;
		complaint = config_set(p->cfg, &config_keys[i], value, msg, sizeof(msg));
		if (complaint != NULL)
			config_error(p, p->lineno, name, "%s", complaint);
		return p->nerrors > before ? -1 : 0;
	}
	hint = config_suggest(name, config_key_name);
	if (hint)
		config_error(p, p->lineno, name, "unknown key (did you mean '%s'?)", hint);
	else
		config_error(p, p->lineno, name, "unknown key");
	return -1;
}

static struct config *
config_new(void)
{
	struct config *cfg;

	if ((cfg = calloc(1, sizeof(*cfg))) == NULL)
		return NULL;
	cfg->refs = 1;
	return cfg;
}

static int
config_finish(struct config_parse *p)
{
	struct config *cfg = p->cfg;
	char host[256];
	const char *at;

	if (cfg->authserv_id == NULL || cfg->authserv_id[0] == '\0') {
		if (gethostname(host, sizeof(host)) == -1)
			str_copy(host, "localhost", sizeof(host));
		host[sizeof(host) - 1] = '\0';
		free(cfg->authserv_id);
		cfg->authserv_id = strdup(host);
	}
	if (cfg->instance_name[0] == '\0') {
		char name[64];

		if (gethostname(host, sizeof(host)) == -1)
			str_copy(host, "unknown", sizeof(host));
		host[sizeof(host) - 1] = '\0';
		/* Cut, not refused: the default must always fit. */
		snprintf(name, sizeof(name), "milterd@%.47s", host);
		free(cfg->instance_name);
		if ((cfg->instance_name = strdup(name)) == NULL)
			return -1;
	}
	if (cfg->challenge_from[0] == '\0') {
		free(cfg->challenge_from);
		if ((cfg->challenge_from = strdup(cfg->verify_address)) == NULL)
			return -1;
	}
	at = strchr(cfg->verify_address, '@');
	cfg->verify_local = strndup(cfg->verify_address, (size_t)(at - cfg->verify_address));
	cfg->verify_domain = strdup(at + 1);
	if (cfg->authserv_id == NULL || cfg->verify_local == NULL || cfg->verify_domain == NULL)
		return -1;
	str_lower(cfg->verify_local);
	str_lower(cfg->verify_domain);
	return 0;
}

struct config *
config_load(const char *path, struct buf *errors)
{
	struct config_parse p;
	char msg[512];
	const char *complaint;

	memset(&p, 0, sizeof(p));
	p.path = path;
	p.errors = errors;
	if ((p.cfg = config_new()) == NULL || (p.cfg->path = strdup(path)) == NULL) {
		buf_printf(errors, "%s: out of memory\n", path);
		free(p.cfg);
		return NULL;
	}
	/* Defaults first, except files, which are only checked when set. */
	for (size_t i = 0; i < NKEYS; i++) {
		const struct config_key *k = &config_keys[i];
		char **sp = (char **)(void *)((char *)p.cfg + k->offset);

		if (k->type == CT_FILE || k->type == CT_OPTFILE || k->type == CT_DIR)
			*sp = strdup(k->def);
		else if ((complaint = config_set(p.cfg, k, k->def, msg, sizeof(msg))) != NULL)
			buf_printf(errors, "%s: default of %s: %s\n", path, k->name, complaint);
	}
	p.nerrors = config_parse_ini(path, 0, config_handler, &p, errors);
	if (access(path, R_OK) == -1) {
		config_unref(p.cfg);
		return NULL;
	}
	/* A default file that was never set must still exist. */
	for (size_t i = 0; i < NKEYS; i++) {
		const struct config_key *k = &config_keys[i];

		if ((k->type == CT_FILE || k->type == CT_DIR) && !p.seen[i] &&
		    (complaint = config_set(p.cfg, k, k->def, msg, sizeof(msg))) != NULL)
			buf_printf(errors, "%s: %s: %s (default; set %s in the file)\n",
			    path, k->name, complaint, k->name), p.nerrors++;
	}
	if (p.nerrors > 0 || config_finish(&p) == -1) {
		config_unref(p.cfg);
		return NULL;
	}
	if ((p.cfg->lines = malloc(sizeof(p.seen))) == NULL) {
		buf_printf(errors, "%s: out of memory\n", path);
		config_unref(p.cfg);
		return NULL;
	}
	memcpy(p.cfg->lines, p.seen, sizeof(p.seen));
	return p.cfg;
}

void
config_ref(struct config *cfg)
{
	__atomic_add_fetch(&cfg->refs, 1, __ATOMIC_SEQ_CST);
}

void
config_unref(struct config *cfg)
{
	if (cfg == NULL || __atomic_sub_fetch(&cfg->refs, 1, __ATOMIC_SEQ_CST) > 0)
		return;
	for (size_t i = 0; i < NKEYS; i++) {
		const struct config_key *k = &config_keys[i];

		switch (k->type) {
		case CT_INT: case CT_MODE: case CT_LOGLEVEL: case CT_FACILITY: case CT_DURATION:
			break;
		default:
			free(*(char **)(void *)((char *)cfg + k->offset));
		}
	}
	free(cfg->nets);
	free(cfg->lines);
	free(cfg->verify_local);
	free(cfg->verify_domain);
	free(cfg->path);
	free(cfg);
}

static void
config_format(const struct config *cfg, const struct config_key *k, char *out, size_t size)
{
	const void *field = (const char *)cfg + k->offset;
	int v = 0;

	/* Only read the field as the type it has. */
	if (k->type == CT_DURATION) {
		config_duration_format(*(const long *)field, out, size);
		return;
	}
	switch (k->type) {
	case CT_INT: case CT_MODE: case CT_LOGLEVEL: case CT_FACILITY:
		v = *(const int *)field;
		break;
	default:
		snprintf(out, size, "%s", *(char *const *)field ? *(char *const *)field : "");
		return;
	}
	switch (k->type) {
	case CT_INT:
		snprintf(out, size, "%d", v);
		break;
	case CT_MODE:
		snprintf(out, size, "%04o", (unsigned)v);
		break;
	case CT_LOGLEVEL:
		snprintf(out, size, "%s", log_level_name(v));
		break;
	case CT_FACILITY:
		for (const char *const *f = (const char *const[]){ "mail", "daemon",
		    "user", "local0", "local1", "local2", "local3", "local4", "local5",
		    "local6", "local7", NULL }; *f; f++)
			if (log_facility_parse(*f) == v) {
				snprintf(out, size, "%s", *f);
				break;
			}
		break;
	default:
		break;
	}
}

void
config_dump(const struct config *cfg, FILE *fp)
{
	char val[1024];

	fprintf(fp, "# effective configuration of %s\n", cfg->path);
	for (size_t i = 0; i < NKEYS; i++) {
		config_format(cfg, &config_keys[i], val, sizeof(val));
		fprintf(fp, "%s = %s\n", config_keys[i].name, val);
	}
}

int
config_reload_conflicts(const struct config *old, const struct config *new,
    struct buf *errors)
{
	char a[1024], b[1024];
	int n = 0;

	for (size_t i = 0; i < NKEYS; i++) {
		if (config_keys[i].reloadable)
			continue;
		config_format(old, &config_keys[i], a, sizeof(a));
		config_format(new, &config_keys[i], b, sizeof(b));
		if (strcmp(a, b) == 0)
			continue;
		/* Where it was changed, as every other error; a key taken out
		 * of the file is back to its default, and on no line. */
		if (new->lines != NULL && new->lines[i] > 0)
			config_file_error(errors, new->path, new->lines[i], config_keys[i].name,
			    "changing it needs a restart");
		else
			buf_printf(errors, "%s: %s: changing it needs a restart (removed: "
			    "back to its default, %s)\n", new->path, config_keys[i].name, b);
		n++;
	}
	return n;
}
