ALTER TABLE "idempotency_keys" DROP CONSTRAINT "idempotency_keys_status_check";--> statement-breakpoint
ALTER TABLE "idempotency_keys" ADD COLUMN "owner_token" uuid;--> statement-breakpoint
ALTER TABLE "idempotency_keys" ADD COLUMN "workflow" text;--> statement-breakpoint
ALTER TABLE "idempotency_keys" ADD COLUMN "input" jsonb;--> statement-breakpoint
ALTER TABLE "idempotency_keys" ADD COLUMN "steps" jsonb;--> statement-breakpoint
ALTER TABLE "idempotency_keys" ADD COLUMN "recovery_point" text;--> statement-breakpoint
ALTER TABLE "idempotency_keys" ADD COLUMN "attempts" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
CREATE INDEX "idempotency_keys_started_locked_until_idx" ON "idempotency_keys" USING btree ("locked_until") WHERE "idempotency_keys"."status" = 'started' and "idempotency_keys"."owner_token" is not null;--> statement-breakpoint
ALTER TABLE "idempotency_keys" ADD CONSTRAINT "idempotency_keys_status_check" CHECK ("idempotency_keys"."status" in ('started', 'completed', 'failed'));