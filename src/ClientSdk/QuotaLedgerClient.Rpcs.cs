namespace QuotaLedger.Client;

public sealed partial class QuotaLedgerClient
{
    private static readonly Rpc s_addResidentOpc = Rpc.Of(V1.RegistryService.Descriptor, "AddResidentOpc");
    private static readonly Rpc s_clawBack = Rpc.Of(V1.RedemptionService.Descriptor, "ClawBack");
    private static readonly Rpc s_confirmOpcOperator = Rpc.Of(V1.RegistryService.Descriptor, "ConfirmOpcOperator");
    private static readonly Rpc s_confirmResidentOpc = Rpc.Of(V1.RegistryService.Descriptor, "ConfirmResidentOpc");
    private static readonly Rpc s_declareRelatedParty = Rpc.Of(V1.RegistryService.Descriptor, "DeclareRelatedParty");
    private static readonly Rpc s_deduct = Rpc.Of(V1.LedgerService.Descriptor, "Deduct");
    private static readonly Rpc s_disburse = Rpc.Of(V1.RedemptionService.Descriptor, "Disburse");
    private static readonly Rpc s_endRelatedParty = Rpc.Of(V1.RegistryService.Descriptor, "EndRelatedParty");
    private static readonly Rpc s_expireDueGrants = Rpc.Of(V1.AdminService.Descriptor, "ExpireDueGrants");
    private static readonly Rpc s_fundBudget = Rpc.Of(V1.AdminService.Descriptor, "FundBudget");
    private static readonly Rpc s_getContract = Rpc.Of(V1.RegistryService.Descriptor, "GetContract");
    private static readonly Rpc s_getDeduction = Rpc.Of(V1.LedgerService.Descriptor, "GetDeduction");
    private static readonly Rpc s_getGrant = Rpc.Of(V1.LedgerService.Descriptor, "GetGrant");
    private static readonly Rpc s_getProgramYear = Rpc.Of(V1.AdminService.Descriptor, "GetProgramYear");
    private static readonly Rpc s_getProvider = Rpc.Of(V1.RegistryService.Descriptor, "GetProvider");
    private static readonly Rpc s_getRedemption = Rpc.Of(V1.RedemptionService.Descriptor, "GetRedemption");
    private static readonly Rpc s_getUnit = Rpc.Of(V1.RegistryService.Descriptor, "GetUnit");
    private static readonly Rpc s_getUnitYear = Rpc.Of(V1.LedgerService.Descriptor, "GetUnitYear");
    private static readonly Rpc s_getYearPolicy = Rpc.Of(V1.AdminService.Descriptor, "GetYearPolicy");
    private static readonly Rpc s_gift = Rpc.Of(V1.LedgerService.Descriptor, "Gift");
    private static readonly Rpc s_grant = Rpc.Of(V1.LedgerService.Descriptor, "Grant");
    private static readonly Rpc s_listRedemptions = Rpc.Of(V1.RedemptionService.Descriptor, "ListRedemptions");
    private static readonly Rpc s_makeCheckpoint = Rpc.Of(V1.AdminService.Descriptor, "MakeCheckpoint");
    private static readonly Rpc s_openBatch = Rpc.Of(V1.RedemptionService.Descriptor, "OpenBatch");
    private static readonly Rpc s_ping = Rpc.Of(V1.LedgerService.Descriptor, "Ping");
    private static readonly Rpc s_registerContract = Rpc.Of(V1.RegistryService.Descriptor, "RegisterContract");
    private static readonly Rpc s_registerProvider = Rpc.Of(V1.RegistryService.Descriptor, "RegisterProvider");
    private static readonly Rpc s_registerUnit = Rpc.Of(V1.RegistryService.Descriptor, "RegisterUnit");
    private static readonly Rpc s_release = Rpc.Of(V1.LedgerService.Descriptor, "Release");
    private static readonly Rpc s_removeResidentOpc = Rpc.Of(V1.RegistryService.Descriptor, "RemoveResidentOpc");
    private static readonly Rpc s_review = Rpc.Of(V1.RedemptionService.Descriptor, "Review");
    private static readonly Rpc s_reviewUnit = Rpc.Of(V1.RegistryService.Descriptor, "ReviewUnit");
    private static readonly Rpc s_setStanding = Rpc.Of(V1.AdminService.Descriptor, "SetStanding");
    private static readonly Rpc s_setYearPolicy = Rpc.Of(V1.AdminService.Descriptor, "SetYearPolicy");
    private static readonly Rpc s_submit = Rpc.Of(V1.RedemptionService.Descriptor, "Submit");
    private static readonly Rpc s_trialBalance = Rpc.Of(V1.AdminService.Descriptor, "TrialBalance");
    private static readonly Rpc s_verifyJournal = Rpc.Of(V1.AdminService.Descriptor, "VerifyJournal");
    private static readonly Rpc s_listEntries = Rpc.Of(V1.LedgerService.Descriptor, "ListEntries");
    private static readonly Rpc s_watch = Rpc.Of(V1.LedgerService.Descriptor, "Watch");
    private static readonly Rpc s_setAlertRules = Rpc.Of(V1.AlertService.Descriptor, "SetAlertRules");
    private static readonly Rpc s_getAlertRules = Rpc.Of(V1.AlertService.Descriptor, "GetAlertRules");
    private static readonly Rpc s_listAlerts = Rpc.Of(V1.AlertService.Descriptor, "ListAlerts");
    private static readonly Rpc s_runAlertPass = Rpc.Of(V1.AlertService.Descriptor, "RunAlertPass");
    private static readonly Rpc s_listCheckpoints = Rpc.Of(V1.AdminService.Descriptor, "ListCheckpoints");
}
