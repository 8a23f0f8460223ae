/* snapshot.h — what decisions run under: the configuration, the policy it
 * names and the reply texts, loaded and validated together and shared by
 * reference, so that a reload never tears down what an open connection uses. */
#ifndef MILTERD_SNAPSHOT_H
#define MILTERD_SNAPSHOT_H

#include "buf.h"
#include "config.h"
#include "policy.h"
#include "replies.h"

struct snapshot {
	int		 refs;
	struct config	*cfg;
	struct policy	*pol;
	struct replies	*replies;
};

/* Loads path, then the policy and the reply texts it names. NULL with every
 * problem appended to errors (FILE:LINE: key: what is wrong). */
struct snapshot	*snapshot_load(const char *path, struct buf *errors);
void		 snapshot_ref(struct snapshot *);
void		 snapshot_unref(struct snapshot *);

#endif
