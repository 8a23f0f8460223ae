/* config.h — milterd.conf: an immutable, reference-counted snapshot built from a
 * table of keys (type, default, whether a reload may change it). */
#ifndef MILTERD_CONFIG_H
#define MILTERD_CONFIG_H

#include <stdarg.h>
#include <stdio.h>

#include "buf.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc/milterd"
#endif
#define CONFIG_DEFAULT_PATH SYSCONFDIR "/milterd.conf"
#ifndef DATADIR
#define DATADIR "/usr/local/share/milterd"
#endif

#define CONFIG_DURATION_MAX	(3650L * 86400)	/* ten years */

struct config {
	int	 refs;
	char	*path;

	char	*socket;
	int	 socket_mode;
	char	*socket_owner;
	char	*database;
	int	 workers;
	int	 active_workers;	/* 0: two per CPU milterd may run on */
	int	 milter_timeout;	/* seconds of MTA silence before closing */
	int	 db_pool_size;
	int	 db_timeout;
	int	 db_commit_timeout;	/* seconds a write may wait, standbys included */
	char	*policy;
	char	*verify_address;
	char	*authserv_id;
	char	*dns_resolver;
	char	*dns_trust_anchor;
	int	 dns_timeout;
	char	*internal_networks;	/* as written; parsed into nets */
	struct config_net {
		int		family;		/* AF_INET or AF_INET6 */
		unsigned char	addr[16];
		int		prefix;
	}	*nets;
	int	 nnets;
	char	*user;
	char	*pidfile;
	char	*templates;
	char	*sendmail_path;
	int	 sendmail_timeout;	/* seconds a challenge's sendmail may take */
	char	*stats_file;
	char	*stats_listen;
	char	*challenge_from;
	char	*service_name;
	char	*instance_name;	/* application_name and evidence: which milterd decided */
	long	 evidence_retention;	/* seconds evidence rows are kept (db prune) */
	long	 request_retention;	/* seconds finished requests are kept */
	char	*follow_exec;	/* program milterctl follow runs on each event */
	int	 log_level;
	int	 syslog_facility;

	/* The line that set each key (config_keys order), 0 for a default:
	 * a refused reload names it. */
	int	*lines;

	/* Derived from verify_address, lowercased. */
	char	*verify_local;
	char	*verify_domain;
};

/* Loads and validates path. On any error returns NULL and appends every
 * problem to errors, one "FILE:LINE: key: what is wrong" line each. */
struct config	*config_load(const char *path, struct buf *errors);
void		 config_ref(struct config *);
void		 config_unref(struct config *);
/* Prints every key with its effective value (-nn). */
void		 config_dump(const struct config *, FILE *);
/* Appends to errors one line per key whose value differs between old and
 * new but cannot change without a restart. Returns the number of such keys. */
int		 config_reload_conflicts(const struct config *old,
		    const struct config *new, struct buf *errors);
/* The INI front-end shared with policy files: calls handler for each key
 * with its line number; handler returns 0, or -1 after appending an error.
 * Syntax errors are appended as "FILE:LINE: what". Returns the number of
 * errors (handler's included); a file that cannot be opened counts one. */
typedef int (*config_ini_handler)(void *user, int line, const char *section,
		    const char *key, const char *value);
int		 config_parse_ini(const char *path, int sections,
		    config_ini_handler handler, void *user, struct buf *errors);
void		 config_file_error(struct buf *errors, const char *path, int line,
		    const char *key, const char *fmt, ...)
		    __attribute__((format(printf, 5, 6)));
void		 config_file_verror(struct buf *errors, const char *path, int line,
		    const char *key, const char *fmt, va_list)
		    __attribute__((format(printf, 5, 0)));
/* The key closest to a misspelt name (edit distance < 3), or NULL; key(i)
 * enumerates the candidates until it returns NULL. */
const char	*config_suggest(const char *name, const char *(*key)(size_t));
/* Whether a client address (text) is loopback or in internal_networks:
 * such clients never pass SPF. */
int		 config_internal_client(const struct config *, const char *ip);
/* "3600", "90s", "30m", "12h", "7d", "2w" -> seconds; -1 if not a duration or
 * above CONFIG_DURATION_MAX. */
long		 config_duration(const char *);
/* Seconds as the largest whole unit: "400d", "2w", "90s". */
void		 config_duration_format(long secs, char *out, size_t size);
/* Iterates over the key table, for documentation checks: returns the name
 * of key i, or NULL past the end. */
const char	*config_key_name(size_t i);

#endif
