-- message.lua — one whole SMTP transaction from a message file, checked at end of message.
-- Globals (miltertest -D):
--   socket, file, rcpt          where, what, to whom
--   mailfrom, client_ip, helo   envelope (defaults below)
--   qid                         queue id macro
--   expect   accept | discard | reply | rcpt-reply | any | verdict   (rcpt-reply: refused
--            at RCPT; any: whatever milterd answers at end of message, for races; verdict:
--            whatever it answers, at RCPT or end of message, printed as "verdict WHAT"
--            for a caller that acts as an MTA would (failover.sh): accept | discard |
--            rcpt (refused at RCPT: the code is in milterd's log) | eom CODE | tempfail |
--            reject | other N)
--   rcode, xcode, text          with expect=reply: the exact SMTP reply wanted
--   ar       with accept: a string the added Authentication-Results must contain
--   ardelete with accept: number of Authentication-Results headers expected deleted
--   ardelete_at  with accept: their 1-based indices among the message's
--            Authentication-Results headers, ascending, comma-separated ("1,3")
--   pause    seconds to wait between RCPT and the headers
--   chunk    send the body in chunks of this many bytes (as an MTA may)
--   barelf   1: send the body's line ends as bare LF, not CRLF
local function fail(msg)
	-- miltertest does not print the message of error(): say it first.
	print(string.format("%s: %s", file, msg))
	error(msg)
end

local f = io.open(file, "rb")
if f == nil then fail("cannot open") end
local content = f:read("*a")
f:close()
content = content:gsub("\r\n", "\n")
local head, body = content:match("^(.-)\n\n(.*)$")
if head == nil then head, body = content, "" end

local conn = mt.connect(socket, 40, 0.25)
if conn == nil then fail("cannot connect to " .. socket) end
if mt.conninfo(conn, helo or "mx.agri.gouv.fr", client_ip or "127.0.0.1") ~= nil then fail("conninfo") end
if mt.helo(conn, helo or "mx.agri.gouv.fr") ~= nil then fail("helo") end
mt.macro(conn, SMFIC_MAIL, "i", qid or "4MSGQID")
if mt.mailfrom(conn, mailfrom or "<agent@agri.gouv.fr>") ~= nil then fail("mailfrom") end
if mt.rcptto(conn, rcpt) ~= nil then fail("rcptto") end
if expect == "rcpt-reply" then
	if mt.getreply(conn) ~= SMFIR_REPLYCODE then fail("RCPT was not refused") end
	mt.disconnect(conn)
	return
end
local function say(what)
	print("verdict " .. what)
end
local got = mt.getreply(conn)
if expect == "verdict" and got ~= SMFIR_CONTINUE then
	local at_rcpt = { [SMFIR_REPLYCODE] = "rcpt", [SMFIR_TEMPFAIL] = "tempfail",
	    [SMFIR_REJECT] = "reject" }
	say(at_rcpt[got] or ("other " .. tostring(got)))
	mt.disconnect(conn)
	return
end
if got ~= SMFIR_CONTINUE then fail("RCPT refused") end
if pause then mt.sleep(tonumber(pause)) end

-- Headers: "Name: value" with folded lines kept as CRLF + white space.
local name, value = nil, nil
local function flush()
	if name ~= nil then
		if mt.header(conn, name, value) ~= nil then fail("header " .. name) end
	end
end
for line in (head .. "\n"):gmatch("(.-)\n") do
	if line:match("^[ \t]") and name ~= nil then
		value = value .. "\r\n" .. line
	else
		flush()
		name, value = line:match("^([^:]+):(.*)$")
		if name == nil then fail("bad header line: " .. line) end
		value = value:gsub("^ ", "")
	end
end
flush()
if mt.eoh(conn) ~= nil then fail("eoh") end
if barelf ~= "1" then body = body:gsub("\n", "\r\n") end
local size = tonumber(chunk or "0")
if size == nil or size <= 0 then size = #body end
local at = 1
while at <= #body do
	if mt.bodystring(conn, body:sub(at, at + size - 1)) ~= nil then fail("body") end
	at = at + size
end
if mt.eom(conn) ~= nil then fail("eom") end

got = mt.getreply(conn)
if expect == "accept" then
	if got ~= SMFIR_ACCEPT then fail("not accepted (reply " .. tostring(got) .. ")") end
	if ar ~= nil then
		local h = mt.getheader(conn, "Authentication-Results", 0)
		if h == nil then fail("no Authentication-Results added") end
		if h:find(ar, 1, true) == nil then fail("Authentication-Results lacks '" .. ar .. "': " .. h) end
	end
	if ardelete ~= nil or ardelete_at ~= nil then
		-- A deletion is a header change to an empty value at an index;
		-- miltertest answers for one index at a time: ask for each.
		local at = {}
		for i = 1, 64 do
			if mt.eom_check(conn, MT_HDRDELETE, "Authentication-Results", i) then
				at[#at + 1] = tostring(i)
			end
		end
		local got = table.concat(at, ",")
		if ardelete ~= nil and #at ~= tonumber(ardelete) then
			fail(string.format("%d Authentication-Results deleted (at '%s'), want %s",
				#at, got, ardelete))
		end
		if ardelete_at ~= nil and got ~= ardelete_at then
			fail("Authentication-Results deleted at '" .. got .. "', want '" .. ardelete_at .. "'")
		end
	end
elseif expect == "verdict" then
	local at_eom = { [SMFIR_ACCEPT] = "accept", [SMFIR_DISCARD] = "discard",
	    [SMFIR_TEMPFAIL] = "tempfail", [SMFIR_REJECT] = "reject" }
	if got == SMFIR_REPLYCODE then
		local code = "?"
		for _, c in ipairs({ "451", "452", "421", "550", "554", "553" }) do
			if mt.eom_check(conn, MT_SMTPREPLY, c) then code = c break end
		end
		say("eom " .. code)
	else
		say(at_eom[got] or ("other " .. tostring(got)))
	end
elseif expect == "any" then
	if got ~= SMFIR_ACCEPT and got ~= SMFIR_REPLYCODE then fail("no verdict (reply " .. tostring(got) .. ")") end
elseif expect == "discard" then
	if got ~= SMFIR_DISCARD then fail("not discarded (reply " .. tostring(got) .. ")") end
elseif expect == "reply" then
	if got ~= SMFIR_REPLYCODE then fail("no SMTP reply (reply " .. tostring(got) .. ")") end
	if not mt.eom_check(conn, MT_SMTPREPLY, rcode, xcode, text) then
		fail("reply is not '" .. rcode .. " " .. xcode .. " " .. text .. "'")
	end
else
	fail("unknown expectation " .. tostring(expect))
end
mt.disconnect(conn)
