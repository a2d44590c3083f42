ALTER TABLE "shop_payments" ADD COLUMN "status" text DEFAULT 'paid' NOT NULL;--> statement-breakpoint
ALTER TABLE "shop_payments" ADD COLUMN "charge_id" text;--> statement-breakpoint
ALTER TABLE "shop_payments" ADD COLUMN "decline_code" text;--> statement-breakpoint
ALTER TABLE "shop_payments" ADD CONSTRAINT "shop_payments_status_check" CHECK ("shop_payments"."status" in ('pending', 'paid', 'declined'));