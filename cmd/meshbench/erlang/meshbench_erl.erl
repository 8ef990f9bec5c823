%% The `meshbench compare` workload on Erlang/OTP distribution, written for
%% meshbench (cmd/meshbench/compare.go embeds it, compiles it with erlc at
%% run time and starts two nodes). The driver node runs
%%
%%   erl ... -run meshbench_erl main PeerNode DurationMs PayloadBytes Senders
%%
%% and prints one line
%%
%%   RESULT <oneway 1 sender msgs/s> <oneway N senders msgs/s> <rtt p50 us> <rtt p99 us> <spawns/s>
%%
%% then stops the peer node and halts. Every phase runs for DurationMs; the
%% message rates are counted at the receivers (received / first-to-last
%% receive), as meshbench does for Mesh.
-module(meshbench_erl).
-export([main/1, sink/1, echo/0, noop/0]).

main([PeerArg, DurArg, PayloadArg, SendersArg]) ->
    Peer = list_to_atom(PeerArg),
    Dur = list_to_integer(DurArg),
    Payload = binary:copy(<<$m>>, list_to_integer(PayloadArg)),
    Senders = list_to_integer(SendersArg),
    Code = try
               ok = await_peer(Peer, 200),
               One = stream(Peer, 1, Payload, Dur),
               Many = stream(Peer, Senders, Payload, Dur),
               {P50, P99} = ping_pong(Peer, Payload, Dur),
               Spawns = spawns(Peer, Dur),
               io:format("RESULT ~.1f ~.1f ~.1f ~.1f ~.1f~n", [One, Many, P50, P99, Spawns]),
               0
           catch Class:Reason:Stack ->
               io:format(standard_error, "meshbench_erl: ~p:~p ~p~n", [Class, Reason, Stack]),
               1
           end,
    rpc:cast(Peer, erlang, halt, []),
    timer:sleep(100),
    halt(Code).

%% The peer node may still be starting.
await_peer(_Peer, 0) -> error(peer_unreachable);
await_peer(Peer, Tries) ->
    case net_adm:ping(Peer) of
        pong -> ok;
        pang -> timer:sleep(50), await_peer(Peer, Tries - 1)
    end.

now_us() -> erlang:monotonic_time(microsecond).

%% N senders here, each streaming Payload to its own sink on Peer for Dur ms,
%% then an end marker with its count. Returns messages/s received.
stream(Peer, N, Payload, Dur) ->
    Self = self(),
    Sinks = [spawn(Peer, ?MODULE, sink, [Self]) || _ <- lists:seq(1, N)],
    Deadline = now_us() + Dur * 1000,
    [spawn_link(fun() -> Sink ! {done, send_until(Sink, Payload, Deadline, 0)} end) || Sink <- Sinks],
    Reports = [receive {sink_report, S, Got, First, Last} -> {Got, First, Last}
               after 120000 -> error(sink_timeout)
               end || S <- Sinks],
    Got = lists:sum([G || {G, _, _} <- Reports]),
    Span = lists:max([L || {_, _, L} <- Reports]) - lists:min([F || {_, F, _} <- Reports]),
    Got / (max(Span, 1) / 1.0e6).

send_until(Sink, Payload, Deadline, Sent) ->
    send_n(Sink, Payload, 64),
    case now_us() >= Deadline of
        true -> Sent + 64;
        false -> send_until(Sink, Payload, Deadline, Sent + 64)
    end.

send_n(_Sink, _Payload, 0) -> ok;
send_n(Sink, Payload, K) -> Sink ! Payload, send_n(Sink, Payload, K - 1).

%% Counts binaries until {done, _}, then reports the count and the times of
%% the first message and of the end marker (it follows the last message).
sink(Driver) -> sink(Driver, 0, 0).

sink(Driver, 0, _) ->
    receive
        {done, _} -> T = now_us(), Driver ! {sink_report, self(), 0, T, T};
        _ -> sink(Driver, 1, now_us())
    end;
sink(Driver, Got, First) ->
    receive
        {done, _} -> Driver ! {sink_report, self(), Got, First, now_us()};
        _ -> sink(Driver, Got + 1, First)
    end.

echo() ->
    receive
        {From, Msg} -> From ! Msg, echo();
        stop -> ok
    end.

noop() -> ok.

%% One message in flight to an echo on Peer for Dur ms; p50 and p99 of the
%% round trips in microseconds (nearest rank).
ping_pong(Peer, Payload, Dur) ->
    Echo = spawn(Peer, ?MODULE, echo, []),
    Deadline = now_us() + Dur * 1000,
    Samples = lists:sort(pings(Echo, {self(), Payload}, Deadline, [])),
    Echo ! stop,
    N = length(Samples),
    Rank = fun(Q) -> lists:nth(max(1, min(N, ceil(Q * N))), Samples) end,
    {float(Rank(0.50)), float(Rank(0.99))}.

pings(Echo, Msg, Deadline, Acc) ->
    T0 = erlang:monotonic_time(nanosecond),
    Echo ! Msg,
    receive B when is_binary(B) -> ok after 10000 -> error(echo_timeout) end,
    Acc1 = [(erlang:monotonic_time(nanosecond) - T0) / 1000 | Acc],
    case now_us() >= Deadline of
        true -> Acc1;
        false -> pings(Echo, Msg, Deadline, Acc1)
    end.

%% Remote spawns one after the other, each waiting for the peer's reply
%% (the new process exists), for Dur ms; spawns/s.
spawns(Peer, Dur) ->
    Start = now_us(),
    K = spawn_loop(Peer, Start + Dur * 1000, 0),
    K / ((now_us() - Start) / 1.0e6).

spawn_loop(Peer, Deadline, K) ->
    Req = erlang:spawn_request(Peer, ?MODULE, noop, [], []),
    receive
        {spawn_reply, Req, ok, _Pid} -> ok;
        {spawn_reply, Req, error, Why} -> error({spawn_failed, Why})
    after 10000 -> error(spawn_timeout)
    end,
    case now_us() >= Deadline of
        true -> K + 1;
        false -> spawn_loop(Peer, Deadline, K + 1)
    end.
