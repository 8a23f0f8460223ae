/* log.h — logging to syslog (facility mail by default) or stderr, each line tagged
 * with the MTA queue id of the message it concerns. */
#ifndef MILTERD_LOG_H
#define MILTERD_LOG_H

#include <syslog.h>

/* Levels are syslog's (LOG_ERR ... LOG_DEBUG). */
void	log_open(const char *ident, int to_stderr, int facility);
void	log_set_level(int level);
int	log_level_parse(const char *name);	/* -1 if unknown */
const char *log_level_name(int level);
int	log_facility_parse(const char *name);	/* -1 if unknown */

/* Before log_open(): text (lines, as milterd -n prints a file's errors) to
 * stderr as it is, each line prefixed with <level> when stderr is journald's
 * (ExecStartPre=, ExecReload=), so that journald records errors as errors. */
void	log_stderr_text(int level, const char *text);

/* qid may be NULL ("NOQUEUE"). */
void	log_msg(int level, const char *qid, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));

#define log_err(...)	log_msg(LOG_ERR, NULL, __VA_ARGS__)
#define log_warn(...)	log_msg(LOG_WARNING, NULL, __VA_ARGS__)
#define log_info(...)	log_msg(LOG_INFO, NULL, __VA_ARGS__)
#define log_debug(...)	log_msg(LOG_DEBUG, NULL, __VA_ARGS__)

#endif
