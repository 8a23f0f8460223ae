-- failover.lua — one whole transaction from a message file, whatever milterd answers;
-- prints "verdict WHAT" for the caller (failover.sh), which acts as an MTA would.
-- Globals (miltertest -D): socket, file, rcpt, mailfrom, qid (envelope as message.lua's).
-- WHAT: accept | discard | rcpt (refused at RCPT: the code is in milterd's log, under
-- the queue id) | eom CODE (refused at end of message: 451, 550...) | tempfail | reject.
local function say(what)
	print("verdict " .. what)
end

local f = io.open(file, "rb")
if f == nil then error("cannot open " .. file) end
local content = f:read("*a"):gsub("\r\n", "\n")
f:close()
local head, body = content:match("^(.-)\n\n(.*)$")
if head == nil then head, body = content, "" end

local conn = mt.connect(socket, 40, 0.25)
if conn == nil then error("cannot connect to " .. socket) end
if mt.conninfo(conn, "mx.agri.gouv.fr", "192.0.2.1") ~= nil then error("conninfo") end
if mt.helo(conn, "mx.agri.gouv.fr") ~= nil then error("helo") end
mt.macro(conn, SMFIC_MAIL, "i", qid)
if mt.mailfrom(conn, mailfrom) ~= nil then error("mailfrom") end
if mt.rcptto(conn, rcpt) ~= nil then error("rcptto") end
local got = mt.getreply(conn)
if got == SMFIR_REPLYCODE then say("rcpt") mt.disconnect(conn) return end
if got == SMFIR_TEMPFAIL then say("tempfail") mt.disconnect(conn) return end
if got == SMFIR_REJECT then say("reject") mt.disconnect(conn) return end

local name, value = nil, nil
local function flush()
	if name ~= nil and mt.header(conn, name, value) ~= nil then error("header " .. name) end
end
for line in (head .. "\n"):gmatch("(.-)\n") do
	if line:match("^[ \t]") and name ~= nil then
		value = value .. "\r\n" .. line
	else
		flush()
		name, value = line:match("^([^:]+):(.*)$")
		if name == nil then error("bad header line: " .. line) end
		value = value:gsub("^ ", "")
	end
end
flush()
if mt.eoh(conn) ~= nil then error("eoh") end
if #body > 0 and mt.bodystring(conn, (body:gsub("\n", "\r\n"))) ~= nil then error("body") end
if mt.eom(conn) ~= nil then error("eom") end

got = mt.getreply(conn)
if got == SMFIR_ACCEPT then say("accept")
elseif got == SMFIR_DISCARD then say("discard")
elseif got == SMFIR_TEMPFAIL then say("tempfail")
elseif got == SMFIR_REJECT then say("reject")
elseif got == SMFIR_REPLYCODE then
	local code = "?"
	for _, c in ipairs({ "451", "452", "421", "550", "554", "553" }) do
		if mt.eom_check(conn, MT_SMTPREPLY, c) then code = c break end
	end
	say("eom " .. code)
else
	say("other " .. tostring(got))
end
mt.disconnect(conn)
