using Grpc.Core;
using QuotaLedger.Server.Rules;

namespace QuotaLedger.Server.Security;

/// <summary>What a caller may do: the role a call needs, and that the party it acts for is its own.</summary>
internal static class Access
{
    public static Caller CallerOf(ServerCallContext context) =>
        context.GetHttpContext().Items[typeof(Caller)] as Caller
        ?? throw new InvalidOperationException("The caller interceptor did not run.");

    /// <summary>Any caller with one of the roles.</summary>
    public static Caller Require(ServerCallContext context, params Role[] anyOf) => Require(CallerOf(context), anyOf);

    /// <summary>The caller, when it has one of the roles; ROLE_REQUIRED otherwise.</summary>
    public static Caller Require(Caller caller, params Role[] anyOf)
    {
        if (!anyOf.Any(caller.Has))
        {
            throw new LedgerException(Reason.RoleRequired,
                $"This call needs the role {string.Join(" or ", anyOf.Select(Caller.RoleName))}; the caller has {Describe(caller)}.");
        }

        return caller;
    }

    /// <summary>A caller with <paramref name="role"/> acting for itself (<paramref name="uscc"/> is its own), or, where
    /// <paramref name="orBureau"/>, the bureau.</summary>
    public static Caller RequireSelf(ServerCallContext context, Role role, string uscc, bool orBureau = false)
    {
        var caller = CallerOf(context);
        if (caller.IsDevelopment || (orBureau && caller.Has(Role.Bureau)))
        {
            return caller;
        }

        if (!caller.Has(role))
        {
            throw new LedgerException(Reason.RoleRequired,
                $"This call needs the role {Caller.RoleName(role)}{(orBureau ? " or bureau" : "")}; the caller has {Describe(caller)}.");
        }

        EnsureOwn(caller, uscc);
        return caller;
    }

    /// <summary>Refuses a caller acting for another party than itself.</summary>
    public static void EnsureOwn(Caller caller, string uscc)
    {
        if (!caller.IsDevelopment && caller.Uscc != uscc)
        {
            throw new LedgerException(Reason.NotYourResource, $"The caller {caller.Uscc} may not act for or read {uscc}.");
        }
    }

    /// <summary>Reads of what belongs to a provider and a unit: either of them, or a reader of everything.</summary>
    public static void EnsureParty(Caller caller, string providerUscc, string unitUscc)
    {
        if (caller.IsDevelopment || ReadsAll(caller)
            || (caller.Has(Role.Provider) && caller.Uscc == providerUscc)
            || (caller.Has(Role.Unit) && caller.Uscc == unitUscc))
        {
            return;
        }

        if (!caller.Has(Role.Provider) && !caller.Has(Role.Unit))
        {
            throw new LedgerException(Reason.RoleRequired, "This read needs the role provider, unit, bureau or expert.");
        }

        throw new LedgerException(Reason.NotYourResource, $"The caller {caller.Uscc} is not a party to what it asked for.");
    }

    /// <summary>Any caller with a role: every read needs one.</summary>
    public static Caller RequireReader(ServerCallContext context) => Require(context, Role.Bureau, Role.Expert, Role.Provider, Role.Unit);

    /// <summary>Whether the caller may read what belongs to this provider and unit: either of them, or a reader of everything.
    /// A read that fails this answers exactly as for a thing that does not exist, so the caller learns nothing of it.</summary>
    public static bool MayRead(Caller caller, string providerUscc, string unitUscc) =>
        caller.IsDevelopment || ReadsAll(caller)
        || (caller.Has(Role.Provider) && caller.Uscc == providerUscc)
        || (caller.Has(Role.Unit) && caller.Uscc == unitUscc);

    /// <summary>Readers of everything: the bureau and its experts (and the development identity).</summary>
    public static bool ReadsAll(Caller caller) => caller.Has(Role.Bureau) || caller.Has(Role.Expert);

    private static string Describe(Caller caller) =>
        caller.Roles.Count == 0 ? "no role" : string.Join(", ", caller.Roles.Select(Caller.RoleName));
}
