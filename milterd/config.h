/* config.h — milterd.conf: an immutable, reference-counted snapshot built from a
 * table of keys (type, default, whether a reload may change it). */
#ifndef MILTERD_CONFIG_H
#define MILTERD_CONFIG_H

#include <stdio.h>

#include "buf.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc/milterd"
#endif
#define CONFIG_DEFAULT_PATH SYSCONFDIR "/milterd.conf"

struct config {
	int	 refs;
	char	*path;

	char	*socket;
	int	 socket_mode;
	char	*socket_owner;
	char	*database;
	int	 db_pool_size;
	int	 db_timeout;
	char	*policy;
	char	*verify_address;
	char	*authserv_id;
	char	*dns_resolver;
	char	*dns_trust_anchor;
	int	 dns_timeout;
	char	*user;
	char	*pidfile;
	int	 log_level;
	int	 syslog_facility;

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
/* Iterates over the key table, for documentation checks: returns the name
 * of key i, or NULL past the end. */
const char	*config_key_name(size_t i);

#endif
