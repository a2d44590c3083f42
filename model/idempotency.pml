/*
 * The key protocol of drizzle-idempotency, as src/ implements it, for Spin.
 * docs/model.md explains what is modelled, what is not, and how to run it
 * (scripts/check-model.sh).
 *
 * Each SQL statement is one atomic step; a statement that waits on a row lock
 * blocks on its guard, or gives up (lock_timeout) and the transaction rolls
 * back. A crash, a thrown fn, a lost connection are all one thing to the
 * database: the transaction rolls back and its locks go. Time is the
 * database clock (statement_timestamp()); it only moves forward.
 *
 * Names: every label and inline below is named after the code it models.
 *
 *   model                  src/ (or README) that implements it
 *   ---------------------  ----------------------------------------------------
 *   lookupStored           src/core/stored-key.ts:lookupStored (lookupFirst)
 *   claimKey               src/core/claim.ts:claimKey (INSERT .. ON CONFLICT DO NOTHING,
 *                          waits on an uncommitted writer, bounded by boundedWait)
 *   lockTimeout            src/core/claim.ts:boundedWait + failure.ts:statementFailure
 *                          (lock_timeout -> IDEMPOTENCY_IN_FLIGHT)
 *   readKey                src/core/stored-key.ts:readKey
 *   RECLAIMABLE            src/core/claim.ts:reclaimable
 *   reclaimKey             src/core/claim.ts:reclaimKey (UPDATE .. WHERE reclaimable,
 *                          re-checked on the locked row)
 *   acquire / nextRound    src/core/with-idempotency.ts:acquire (ACQUIRE_ROUNDS = 3)
 *   replayOf               src/core/stored-key.ts:replayOf (KEY_REUSED / IN_FLIGHT / replay)
 *   runFn                  src/core/with-idempotency.ts:runFn (the effect of fn)
 *   storeResult            src/core/store.ts:storeResult (own started claim only,
 *                          else IDEMPOTENCY_CLAIM_LOST; expiry = completion + TTL)
 *   commit                 COMMIT of src/core/with-idempotency.ts:inOwnTransaction
 *                          (or of the caller's transaction, inCallersTransaction)
 *   commitUnawaited        README "A call you do not await": the caller's transaction
 *                          commits while fn runs; the claim commits unfinished
 *   rollback               ROLLBACK (crash, fn threw, lost connection, any error)
 *   retry                  src/client/fetch-with-retry.ts:fetchWithRetry (same key again)
 *   deleteBatch            src/ops/sweep.ts:deleteBatch (SELECT .. FOR UPDATE SKIP LOCKED,
 *                          then DELETE .. AND expired, one transaction per batch)
 *   clock                  statement_timestamp()
 *
 * Mutations (docs/model.md): -DMUT_STARTED_NO_LEASE takes over a `started` row
 * that has no lease; -DMUT_EXPIRY_FROM_CLAIM keeps the expiry the claim set.
 */

#ifndef NC
#define NC 3          /* clients */
#endif
#define NK 2          /* (scope, key) rows: the same key text in two scopes */
#define NFP 2         /* fingerprints a client may send */
#define TTL 1
#ifndef MAXT
#define MAXT 2        /* the clock runs 0..MAXT while clients run */
#endif
#ifndef RETRIES
#define RETRIES 1     /* retries of client 1 (its crash, its lost answer, its 409); the others try once */
#endif
#define TRIES(me) (me == 1 -> 1 + RETRIES : 1)
#ifndef UNAWAITED
#define UNAWAITED 1   /* how many calls may be committed unawaited per run */
#endif
#define SWEEPER (NC + 1)

#define NONE 0
#define STARTED 1
#define COMPLETED 2

/* The committed row of each (scope, key): what other transactions see. */
byte r_status[NK];
byte r_fp[NK];
byte r_resp[NK];      /* the client whose answer is stored (0: none) */
byte r_exp[NK];       /* expires_at */
byte gen[NK];         /* bumped when a row is deleted: a later row is another tuple */

/* The lock holder's uncommitted version of the row, and the lock itself. */
byte lock[NK];        /* 0: free, else the holding transaction */
bool writer[NK];      /* the holder wrote the row (INSERT/UPDATE/DELETE), not just FOR UPDATE */
byte p_status[NK];
byte p_fp[NK];
byte p_resp[NK];
byte p_exp[NK];

byte now;
byte unawaitedLeft = UNAWAITED;
byte done;            /* clients that finished */
bool final;           /* the audit has started: the sweeper stops */

/* Ghost state (the specification, not the implementation). */
byte g_until[NK];     /* a committed effect's key lives while now < g_until (DESIGN invariant 6) */
bool g_unfinished[NK];/* the row was committed unfinished by commitUnawaited */
byte effects[NK];     /* committed effects, for the audit */
byte cl_slot[NC + 1];
byte cl_fp[NC + 1];

/* src/core/claim.ts:reclaimable. The clients modelled here never write a
 * lease (locked_until): only leased workflows (src/leased) do, and their rows
 * carry an owner token, which the rule excludes. So the leased half of the rule
 * (started, locked_until <= now, no owner token) never matches here. */
#ifdef MUT_STARTED_NO_LEASE
#define RECLAIMABLE(st, ex) ((st == COMPLETED && ex <= now) || st == STARTED)
#else
#define RECLAIMABLE(st, ex) (st == COMPLETED && ex <= now)
#endif

/* ROLLBACK: the uncommitted version and the lock go. */
inline rollback(s, me) {
  atomic {
    if
    :: lock[s] == me -> lock[s] = 0; writer[s] = false
    :: else -> skip
    fi;
    eff = false
  }
}

proctype clock() {
end_clock:
  do
  :: atomic { now < MAXT && !final -> now++; printf("MSC: clock: now = %d\n", now) }
  od
}

proctype client(byte me) {
  byte s, fp, tries, round, st, rfp, rresp, rexp, startgen, specUntil;
  bool ok, eff, recl;

  /* The requests: clients 1 and 2 send the same request (duplicates); client
   * 3 sends either the same key with another fingerprint, or the same key in
   * another scope. */
  atomic {
    if
    :: me < 3 -> s = 0; fp = 0
    :: me >= 3 -> s = 0; fp = 1
    :: me >= 3 -> s = 1; fp = 0
    fi;
    cl_slot[me] = s; cl_fp[me] = fp
  }

attempt:
  tries++;
  if
  :: true -> skip
  :: true ->
lookupStored:
    atomic {
      if
      :: r_status[s] == COMPLETED && r_exp[s] > now ->
         st = COMPLETED; rfp = r_fp[s]; rresp = r_resp[s]
      :: else -> st = NONE
      fi;
      printf("MSC: c%d lookupStored row %d: %d (1: a live completed row)\n", me, s, st == COMPLETED)
    };
    if :: st == COMPLETED -> goto replayOf :: else -> skip fi
  fi;

  /* BEGIN; acquire: claim, read, reclaim, for at most 3 rounds. */
  round = 0;
claimKey:
  if
  :: atomic {
       (lock[s] == 0 || !writer[s]) ->
       if
       :: lock[s] == 0 && r_status[s] == NONE ->
          lock[s] = me; writer[s] = true;
          p_status[s] = STARTED; p_fp[s] = fp; p_resp[s] = 0; p_exp[s] = now + TTL;
          ok = true;
          printf("MSC: c%d claimKey row %d: inserted, started, fp %d, expires_at %d (uncommitted)\n", me, s, fp, p_exp[s])
       :: else -> ok = false;   /* a committed row: DO NOTHING, no lock taken */
          printf("MSC: c%d claimKey row %d: conflict, DO NOTHING\n", me, s)
       fi
     }
  :: atomic { lock[s] != 0 && writer[s] -> printf("MSC: c%d claimKey row %d: waits on c%d, lock_timeout\n", me, s, lock[s]) }; goto lockTimeout
  fi;
  if :: ok -> ok = false; goto runFn :: else -> skip fi;

readKey:
  atomic {
    st = r_status[s]; rfp = r_fp[s]; rresp = r_resp[s]; rexp = r_exp[s];
    recl = RECLAIMABLE(st, rexp);
    printf("MSC: c%d readKey row %d: status %d (1 started, 2 completed), fp %d, expires_at %d, reclaimable %d\n", me, s, st, rfp, rexp, recl);
    rexp = 0
  };
  if
  :: st == NONE -> recl = false; goto nextRound          /* swept between the two statements */
  :: st != NONE && !recl -> goto replayOf
  :: else -> recl = false; st = NONE; rfp = 0; rresp = 0
  fi;

reclaimKey:
  if
  :: atomic {
       lock[s] == 0 ->
       if
       :: r_status[s] != NONE && RECLAIMABLE(r_status[s], r_exp[s]) ->
          lock[s] = me; writer[s] = true;
          p_status[s] = STARTED; p_fp[s] = fp; p_resp[s] = 0; p_exp[s] = now + TTL;
          ok = true;
          printf("MSC: c%d reclaimKey row %d: took the row over, started, expires_at %d (uncommitted)\n", me, s, p_exp[s])
       :: else -> ok = false; printf("MSC: c%d reclaimKey row %d: 0 rows\n", me, s)
       fi
     }
  :: atomic { lock[s] != 0 -> if :: r_status[s] != NONE -> startgen = gen[s] :: else -> startgen = 255 fi };
     if
     :: startgen == 255 -> ok = false; startgen = 0   /* only an uncommitted insert: not in the UPDATE's snapshot */
     :: startgen != 255 ->
        if
        :: atomic {
             lock[s] == 0 ->    /* the lock holder ended: re-check on the row as it is now */
             if
             :: gen[s] == startgen && r_status[s] != NONE && RECLAIMABLE(r_status[s], r_exp[s]) ->
                lock[s] = me; writer[s] = true;
                p_status[s] = STARTED; p_fp[s] = fp; p_resp[s] = 0; p_exp[s] = now + TTL;
                ok = true;
                printf("MSC: c%d reclaimKey row %d: waited, took the row over, expires_at %d (uncommitted)\n", me, s, p_exp[s])
             :: else -> ok = false; printf("MSC: c%d reclaimKey row %d: waited, 0 rows\n", me, s)
             fi;
             startgen = 0
           }
        :: goto lockTimeout
        fi
     fi
  fi;
  if :: ok -> ok = false; goto runFn :: else -> skip fi;

nextRound:
  round++;
  if
  :: round < 3 -> goto claimKey
  :: else -> goto lockTimeout  /* "kept changing under concurrent reclaims": IDEMPOTENCY_IN_FLIGHT */
  fi;

runFn:
  /* fn's writes, uncommitted: they commit with the key row or not at all. */
  eff = true;
  printf("MSC: c%d runFn row %d: fn's effect (uncommitted)\n", me, s);
  if
  :: skip
  :: printf("MSC: c%d crash in fn\n", me); goto rollbackAndRetry       /* fn threw, or the process died */
  :: atomic { unawaitedLeft > 0 -> unawaitedLeft-- }; goto commitUnawaited
  fi;

storeResult:
  atomic {
    if
    :: lock[s] == me && writer[s] && p_status[s] == STARTED && p_fp[s] == fp ->
       p_status[s] = COMPLETED; p_resp[s] = me;
#ifndef MUT_EXPIRY_FROM_CLAIM
       p_exp[s] = now + TTL;
#endif
       specUntil = now + TTL;
       ok = true;
       printf("MSC: c%d storeResult row %d: completed at %d, expires_at %d\n", me, s, now, p_exp[s])
    :: else -> ok = false
    fi
  };
  assert(ok);   /* IDEMPOTENCY_CLAIM_LOST cannot happen: nobody else changes a claimed row */
  ok = false;
  if
  :: skip
  :: printf("MSC: c%d crash before COMMIT\n", me); goto rollbackAndRetry       /* died before COMMIT */
  fi;

commit:
  atomic {
    assert(lock[s] == me && writer[s] && p_status[s] == COMPLETED);  /* key, effect and answer together */
    /* Property 1: at most one committed effect per live key. */
    assert(now >= g_until[s]);
    g_until[s] = specUntil; g_unfinished[s] = false; effects[s]++;
    printf("MSC: c%d COMMIT row %d at %d: effect #%d committed; the key lives until %d\n", me, s, now, effects[s], g_until[s]);
    r_status[s] = p_status[s]; r_fp[s] = p_fp[s]; r_resp[s] = p_resp[s]; r_exp[s] = p_exp[s];
    lock[s] = 0; writer[s] = false; eff = false; specUntil = 0; round = 0
  };
  if
  :: goto finished               /* the answer reached the caller */
  :: goto retry                  /* the answer was lost after COMMIT: the client retries */
  fi;

commitUnawaited:
  atomic {
    assert(lock[s] == me && writer[s] && p_status[s] == STARTED);
    assert(now >= g_until[s]);
    /* An unfinished claim lives for the TTL its claim set, as the README says. */
    g_until[s] = p_exp[s]; g_unfinished[s] = true; effects[s]++;
    printf("MSC: c%d commitUnawaited row %d at %d: the caller committed while fn ran: effect #%d and a started row, expires_at %d\n", me, s, now, effects[s], p_exp[s]);
    r_status[s] = STARTED; r_fp[s] = p_fp[s]; r_resp[s] = 0; r_exp[s] = p_exp[s];
    lock[s] = 0; writer[s] = false; eff = false
  };
  goto finished;

replayOf:
  /* Whatever transaction we opened holds no lock here; its end changes nothing. */
  rollback(s, me);
  round = 0;
  if
  :: rfp != fp -> printf("MSC: c%d replayOf: IDEMPOTENCY_KEY_REUSED\n", me); goto finished   /* 422: not retried */
  :: rfp == fp && st != COMPLETED -> printf("MSC: c%d replayOf: IDEMPOTENCY_IN_FLIGHT\n", me); goto retry   /* 409: retried */
  :: rfp == fp && st == COMPLETED ->
     /* Property 2: only an answer stored for this scope, key and fingerprint. */
     printf("MSC: c%d replayOf: replays c%d's answer\n", me, rresp);
     assert(rresp != 0 && cl_slot[rresp] == s && cl_fp[rresp] == fp);
     rresp = 0;
     goto finished
  fi;

lockTimeout:
  /* IDEMPOTENCY_IN_FLIGHT: the transaction rolls back; the client retries. */
rollbackAndRetry:
  printf("MSC: c%d ROLLBACK\n", me);
  rollback(s, me);
retry:
  atomic { st = NONE; rfp = 0; rresp = 0; round = 0; ok = false; specUntil = 0; startgen = 0; recl = false };
  if
  :: tries < TRIES(me) -> goto attempt
  :: else -> skip
  fi;
finished:
  assert(lock[s] != me);
  done++
}

/* src/ops/sweep.ts:deleteBatch, each batch its own transaction: one
 * statement locks (FOR UPDATE SKIP LOCKED) and deletes the expired rows, then
 * the batch commits, or rolls back. */
proctype sweeper() {
  byte i;
end_sweeper:
  do
  :: atomic {
       !final ->
       for (i : 0 .. NK - 1) {
         if
         :: lock[i] == 0 && r_status[i] != NONE && r_exp[i] <= now ->
            lock[i] = SWEEPER; writer[i] = true; p_status[i] = NONE;
            printf("MSC: sweeper deleteBatch row %d: expires_at %d <= now %d, deleted (uncommitted)\n", i, r_exp[i], now)
         :: else -> skip
         fi
       }
     };
     if
     :: atomic {              /* COMMIT */
          for (i : 0 .. NK - 1) {
            if
            :: lock[i] == SWEEPER ->
               printf("MSC: sweeper COMMIT: row %d gone\n", i);
               assert(now >= g_until[i]);   /* never deletes a live key */
               r_status[i] = NONE; r_resp[i] = 0; gen[i]++;
               lock[i] = 0; writer[i] = false
            :: else -> skip
            fi
          }
        }
     :: atomic {              /* ROLLBACK */
          for (i : 0 .. NK - 1) {
            if :: lock[i] == SWEEPER -> lock[i] = 0; writer[i] = false :: else -> skip fi
          }
        }
     fi
  od
}

/* The audit once every client is done. */
proctype audit() {
  byte i;
  atomic {
    done == NC && lock[0] == 0 && lock[1] == 0 ->
    final = true;
    /* Property 3a: no key is held by a transaction that is gone. */
    for (i : 0 .. NK - 1) {
      /* Property 3b: a committed started row comes only from a call not awaited. */
      assert(r_status[i] != STARTED || g_unfinished[i]);

    }
    /* Property 3c: once the TTL has passed, a sweep leaves no started row. */
    now = MAXT + TTL;
    for (i : 0 .. NK - 1) {
      if :: r_status[i] != NONE && r_exp[i] <= now -> assert(now >= g_until[i]); r_status[i] = NONE :: else -> skip fi;
      assert(r_status[i] != STARTED)
    }
  }
}

init {
  byte c;
  atomic {
    run clock();
    run sweeper();
    run audit();
    for (c : 1 .. NC) { run client(c) }
  }
}
