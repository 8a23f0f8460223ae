-- rcpt.lua — one SMTP transaction up to RCPT TO; checks milterd's answer to the recipient.
-- Globals (miltertest -D): socket, rcpt, expect ("continue" | "reply"), qid (optional);
-- rcpt2, expect2 (optional): a second recipient in the same transaction, and its answer.
-- miltertest does not print the message of error(): say it first.
local function fail(msg) print(msg) error(msg) end
local conn = mt.connect(socket, 40, 0.25)
if conn == nil then fail("cannot connect to " .. socket) end
if mt.conninfo(conn, "mx.agri.gouv.fr", "127.0.0.1") ~= nil then fail("conninfo failed") end
if mt.helo(conn, "mx.agri.gouv.fr") ~= nil then fail("helo failed") end
mt.macro(conn, SMFIC_MAIL, "i", qid or "4TESTQID")
if mt.mailfrom(conn, "<agent@agri.gouv.fr>") ~= nil then fail("mailfrom failed") end
if mt.rcptto(conn, rcpt) ~= nil then fail("rcptto failed") end
local function check(to, what)
	local got = mt.getreply(conn)
	local want = ({ continue = SMFIR_CONTINUE, reply = SMFIR_REPLYCODE })[what]
	if got ~= want then
		fail(string.format("rcpt %s: got reply %s, want %s (%s)", to, tostring(got),
			tostring(want), what))
	end
end
check(rcpt, expect)
if rcpt2 ~= nil then
	if mt.rcptto(conn, rcpt2) ~= nil then fail("second rcptto failed") end
	check(rcpt2, expect2)
end
mt.disconnect(conn)
