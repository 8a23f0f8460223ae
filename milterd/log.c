/* log.c — one logging path for the daemon and the CLI: syslog or stderr. */
#include <sys/stat.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>

#include "log.h"

static int log_to_stderr = 1;
/* stderr is journald's stream: each line starts with <N>, its syslog priority. */
static int log_to_journal;
/* Written by the signal thread on reload, read by every worker. */
static int log_threshold = LOG_INFO;
static const char *log_ident = "milterd";
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const struct {
	const char *name;
	int	    value;
} log_levels[] = {
	{ "err", LOG_ERR }, { "warning", LOG_WARNING }, { "notice", LOG_NOTICE },
	{ "info", LOG_INFO }, { "debug", LOG_DEBUG },
}, log_facilities[] = {
	{ "mail", LOG_MAIL }, { "daemon", LOG_DAEMON }, { "user", LOG_USER },
	{ "local0", LOG_LOCAL0 }, { "local1", LOG_LOCAL1 }, { "local2", LOG_LOCAL2 },
	{ "local3", LOG_LOCAL3 }, { "local4", LOG_LOCAL4 }, { "local5", LOG_LOCAL5 },
	{ "local6", LOG_LOCAL6 }, { "local7", LOG_LOCAL7 },
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* systemd sets JOURNAL_STREAM=DEV:INODE when it connects stdout or stderr to
 * journald; it is stderr's only if fd 2 is still that very stream (a shell
 * under the unit may have redirected it), as sd_journal_stream_fd(3) says.
 * journald reads a leading <N> as the line's priority (SyslogLevelPrefix=, on
 * by default): without it every line is recorded at info. */
static int
log_stderr_is_journal(void)
{
	const char *env = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	char end;

	if (env == NULL || sscanf(env, "%llu:%llu%c", &dev, &ino, &end) != 2)
		return 0;
	if (fstat(2, &st) == -1)
		return 0;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void
log_stderr_text(int level, const char *text)
{
	int journal = log_stderr_is_journal();

	for (const char *p = text, *nl; *p; p = nl) {
		nl = p + strcspn(p, "\n");
		if (*nl == '\n')
			nl++;
		if (journal)
			fprintf(stderr, "<%d>", level);
		fwrite(p, 1, (size_t)(nl - p), stderr);
	}
	fflush(stderr);
}

void
log_open(const char *ident, int to_stderr, int facility)
{
	log_ident = ident;
	log_to_stderr = to_stderr;
	log_to_journal = to_stderr && log_stderr_is_journal();
	if (!to_stderr)
		openlog(ident, LOG_PID | LOG_NDELAY, facility);
}

void
log_set_level(int level)
{
	__atomic_store_n(&log_threshold, level, __ATOMIC_RELAXED);
}

int
log_level_parse(const char *name)
{
	for (size_t i = 0; i < NELEM(log_levels); i++)
		if (strcmp(name, log_levels[i].name) == 0)
			return log_levels[i].value;
	return -1;
}

const char *
log_level_name(int level)
{
	for (size_t i = 0; i < NELEM(log_levels); i++)
		if (log_levels[i].value == level)
			return log_levels[i].name;
	return "info";
}

int
log_facility_parse(const char *name)
{
	for (size_t i = 0; i < NELEM(log_facilities); i++)
		if (strcmp(name, log_facilities[i].name) == 0)
			return log_facilities[i].value;
	return -1;
}

void
log_msg(int level, const char *qid, const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	int n;

	if (level > __atomic_load_n(&log_threshold, __ATOMIC_RELAXED))
		return;
	n = snprintf(line, sizeof(line), "%s: ", qid ? qid : "NOQUEUE");
	if (n < 0)
		return;
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	/* Never let a logged value forge extra log lines. */
	for (char *p = line; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	if (!log_to_stderr) {
		syslog(level, "%s", line);
		return;
	}
	pthread_mutex_lock(&log_lock);
	/* One write per line: stderr is unbuffered. */
	if (log_to_journal)
		fprintf(stderr, "<%d>%s[%s]: %s\n", level, log_ident, log_level_name(level), line);
	else
		fprintf(stderr, "%s[%s]: %s\n", log_ident, log_level_name(level), line);
	fflush(stderr);
	pthread_mutex_unlock(&log_lock);
}
