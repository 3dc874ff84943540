/** Two projects: fast unit tests (pure core, Pulumi mocks) and integration tests
 * (real Pulumi engine against lab hosts). `npm test` runs both. */
const base = {
  preset: "ts-jest",
  testEnvironment: "node",
};
module.exports = {
  projects: [
    { ...base, displayName: "unit", testMatch: ["<rootDir>/test/unit/**/*.test.ts"] },
    { ...base, displayName: "integration", testMatch: ["<rootDir>/test/integration/**/*.test.ts"] },
  ],
};
