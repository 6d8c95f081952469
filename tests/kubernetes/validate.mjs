// Validates KEDA objects (a JSON array on stdin) against KEDA's CRD schemas, as
// @kubernetes-models/keda compiles them; prints one line per invalid object, exits 1 if any.
import { readFileSync } from "node:fs";
import * as keda from "@kubernetes-models/keda/keda.sh/v1alpha1";

let invalid = 0;
for (const object of JSON.parse(readFileSync(0, "utf8"))) {
  const name = `${object.kind}/${object.metadata?.name}`;
  const Model = object.apiVersion === "keda.sh/v1alpha1" ? keda[object.kind] : undefined;
  if (!Model) {
    console.log(`${name}: not a KEDA kind (${object.apiVersion})`);
    invalid++;
    continue;
  }
  try {
    new Model(object).validate();
  } catch (error) {
    console.log(`${name}: ${error.message}`);
    invalid++;
  }
}
process.exit(invalid ? 1 : 0);
