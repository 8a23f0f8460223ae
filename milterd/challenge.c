/* challenge.c — challenge mails: the placeholders, the envelope, submission. */
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "challenge.h"
#include "render.h"
#include "replies.h"

int
challenge_render(const struct config *cfg, const struct challenge *ch, struct buf *out,
    struct buf *err)
{
	char path[4096], date[64], msgid[128], reply_to[400], rnd[8];
	struct tm tm;
	time_t now = time(NULL);
	const struct render_var vars[] = {
		{ "account", ch->account }, { "to", ch->email }, { "token", ch->token },
		{ "reply_to", reply_to }, { "from", cfg->challenge_from },
		{ "service_name", cfg->service_name }, { "date", date },
		{ "message_id", msgid }, { "expires", ch->expires },
		{ "ends", ch->ends ? ch->ends : "" },
	};

	if (RAND_bytes((unsigned char *)rnd, sizeof(rnd)) != 1) {
		buf_puts(err, "no randomness for the Message-ID");
		return -1;
	}
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	if ((size_t)snprintf(msgid, sizeof(msgid), "%lld.%02x%02x%02x%02x%02x%02x%02x%02x@%s",
	    (long long)now, rnd[0] & 0xff, rnd[1] & 0xff, rnd[2] & 0xff, rnd[3] & 0xff,
	    rnd[4] & 0xff, rnd[5] & 0xff, rnd[6] & 0xff, rnd[7] & 0xff, cfg->verify_domain) >=
	    sizeof(msgid) ||
	    (size_t)snprintf(reply_to, sizeof(reply_to), "%s+%s@%s", cfg->verify_local,
	    ch->token, cfg->verify_domain) >= sizeof(reply_to) ||
	    (size_t)snprintf(path, sizeof(path), "%s/%s.%s.eml", cfg->templates, ch->kind,
	    replies_lang_name(ch->lang)) >= sizeof(path)) {
		buf_puts(err, "verify_address or templates too long for a challenge");
		return -1;
	}
	return render_file(path, vars, sizeof(vars) / sizeof(vars[0]), out, err);
}

/* Milliseconds from now to deadline, 0 once it has passed. */
static int
challenge_ms_left(const struct timespec *deadline)
{
	struct timespec now;
	long long ms;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (long long)(deadline->tv_sec - now.tv_sec) * 1000 +
	    (deadline->tv_nsec - now.tv_nsec) / 1000000;
	return ms <= 0 ? 0 : (int)ms;	/* sendmail_timeout is at most an hour */
}

/* Waits for pid until deadline: 0 with *status set, 1 when the deadline
 * passed first, -1 if waitpid failed (errno set). Polled in steps of 10 ms:
 * a CLI sends one mail at a time, and a pidfd or a SIGCHLD handler would
 * only save those milliseconds. */
static int
challenge_wait(pid_t pid, int *status, const struct timespec *deadline)
{
	const struct timespec step = { 0, 10 * 1000 * 1000 };

	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);

		if (r == pid)
			return 0;
		if (r == -1 && errno != EINTR)
			return -1;
		if (challenge_ms_left(deadline) == 0)
			return 1;
		(void)nanosleep(&step, NULL);
	}
}

/* Writes all of msg to fd (non-blocking) before deadline; 0, or -1 when the
 * reader went away or the deadline passed (the caller then kills it). */
static int
challenge_write(int fd, const struct buf *msg, const struct timespec *deadline)
{
	for (size_t off = 0; off < msg->len; ) {
		ssize_t n = write(fd, msg->s + off, msg->len - off);
		struct pollfd p = { fd, POLLOUT, 0 };
		int ms;

		if (n >= 0) {
			off += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN || (ms = challenge_ms_left(deadline)) == 0)
			return -1;
		(void)poll(&p, 1, ms);
	}
	return 0;
}

int
challenge_send(const struct config *cfg, const char *msg, struct buf *err)
{
	int fds[2], status, waited;
	struct timespec deadline;
	pid_t pid;
	struct buf lf;

	/* Local submission takes LF line endings. */
	buf_init(&lf);
	for (const char *c = msg; *c; c++)
		if (*c != '\r')
			buf_putc(&lf, *c);
	if (pipe(fds) == -1) {
		buf_printf(err, "pipe: %s", strerror(errno));
		buf_free(&lf);
		return -1;
	}
	if ((pid = fork()) == -1) {
		buf_printf(err, "fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		buf_free(&lf);
		return -1;
	}
	if (pid == 0) {
		/* A group of its own: Postfix's sendmail runs postdrop, and a
		 * sendmail killed for its time must take its children along. */
		(void)setpgid(0, 0);
		dup2(fds[0], 0);
		close(fds[0]);
		close(fds[1]);
		execl(cfg->sendmail_path, "sendmail", "-t", "-i", (char *)NULL);
		_exit(127);
	}
	(void)setpgid(pid, pid);	/* as the child does: whichever runs first */
	close(fds[0]);
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += cfg->sendmail_timeout;
	(void)fcntl(fds[1], F_SETFL, O_NONBLOCK);
	/* waited: 1 once the deadline has passed, writing or waiting. A write
	 * error before it is the reader's going: its exit status says why. */
	waited = challenge_write(fds[1], &lf, &deadline) == -1 &&
	    challenge_ms_left(&deadline) == 0;
	close(fds[1]);
	buf_free(&lf);
	if (!waited && (waited = challenge_wait(pid, &status, &deadline)) == -1) {
		buf_printf(err, "waitpid: %s", strerror(errno));
		return -1;
	}
	if (waited == 1) {
		/* A sendmail that hangs (a relay that does not answer, for one
		 * that delivers at once; a full queue) would hold recertify and
		 * its database lock, and every challenge after it, for ever. */
		(void)kill(-pid, SIGKILL);
		(void)kill(pid, SIGKILL);	/* in case neither setpgid took */
		while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
			;
		buf_printf(err, "%s -t -i did not finish within sendmail_timeout (%d s); killed",
		    cfg->sendmail_path, cfg->sendmail_timeout);
		return CHALLENGE_STALLED;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		buf_printf(err, "%s -t -i failed (%s %d)", cfg->sendmail_path,
		    WIFEXITED(status) ? "exit" : "signal",
		    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		return -1;
	}
	return 0;
}
