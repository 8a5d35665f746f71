module crdbtls.invalid/gopeer

go 1.19
