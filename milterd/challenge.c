/* challenge.c — challenge mails: the placeholders, the envelope, submission. */
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
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

int
challenge_send(const struct config *cfg, const char *msg, struct buf *err)
{
	int fds[2], status;
	pid_t pid;
	size_t len;
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
		dup2(fds[0], 0);
		close(fds[0]);
		close(fds[1]);
		execl(cfg->sendmail_path, "sendmail", "-t", "-i", (char *)NULL);
		_exit(127);
	}
	close(fds[0]);
	len = lf.len;
	for (size_t off = 0; off < len; ) {
		ssize_t n = write(fds[1], lf.s + off, len - off);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			break;
		}
		off += (size_t)n;
	}
	close(fds[1]);
	buf_free(&lf);
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR) {
			buf_printf(err, "waitpid: %s", strerror(errno));
			return -1;
		}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		buf_printf(err, "%s -t -i failed (%s %d)", cfg->sendmail_path,
		    WIFEXITED(status) ? "exit" : "signal",
		    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		return -1;
	}
	return 0;
}
