// This README example is complete as written: it needs no declarations.
// test/readme/readme-examples.test.ts type-checks it like every other one.
export {};
